def nesterov(w, g, lr, m):
    """SGD with Nesterov momentum 0.9 (torch.optim.SGD(momentum=0.9, nesterov=True))."""
    m = m * 0.9
    m = m + g
    look = m * 0.9
    look = look + g
    update = look * lr
    return update, m
