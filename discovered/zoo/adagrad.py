def adagrad(w, g, lr, v):
    """Adagrad (torch.optim.Adagrad defaults: eps 1e-10, no decay)."""
    g2 = square(g)
    v = v + g2
    d = sqrt(v)
    d = d + 1e-10
    update = g / d
    update = update * lr
    return update, v
