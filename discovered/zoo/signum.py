def signum(w, g, lr, m):
    """Signum: sign of an exponential moving average of gradients (momentum 0.9)."""
    m = interp(g, m, 0.9)
    update = sign(m)
    update = update * lr
    return update, m
