def lion_clip(w, g, lr, m):
    """Lion-kappa with kappa the Huber function of width t = 0.001 (x * x / (2 t) below t, |x| - t / 2
    above): sign becomes its gradient clip(x / t, 1), the identity near zero and sign beyond."""
    c = interp(g, m, 0.9)
    c = c / 0.001
    update = clip(c, 1.0)
    m = interp(g, m, 0.99)
    decay = w * 0.01
    update = update + decay
    update = update * lr
    return update, m
