def lion(w, g, lr, m):
    """Lion (Chen et al. 2023): sign of an interpolation, a slower momentum, decoupled weight decay."""
    c = interp(g, m, 0.9)
    update = sign(c)
    m = interp(g, m, 0.99)
    decay = w * 0.01
    update = update + decay
    update = update * lr
    return update, m
