def sgd(w, g, lr):
    """Stochastic gradient descent (torch.optim.SGD defaults)."""
    update = g * lr
    return update
