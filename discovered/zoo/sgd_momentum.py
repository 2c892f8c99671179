def sgd_momentum(w, g, lr, m):
    """SGD with heavy-ball momentum 0.9 (torch.optim.SGD(momentum=0.9)); at step 1 the buffer is g."""
    m = m * 0.9
    m = m + g
    update = m * lr
    return update, m
