def rmsprop(w, g, lr, v):
    """RMSprop (torch.optim.RMSprop defaults: alpha 0.99, eps 1e-8)."""
    g2 = square(g)
    v = interp(g2, v, 0.99)
    d = sqrt(v)
    d = d + 1e-08
    update = g / d
    update = update * lr
    return update, v
