def lion_tanh(w, g, lr, m):
    """Lion-kappa with kappa(x) = t * log(cosh(x / t)) (t = 0.001): sign becomes its gradient
    tanh(x / t), a smooth sign that is linear below t; |tanh| < 1 keeps Lion's box constraint."""
    c = interp(g, m, 0.9)
    c = c / 0.001
    update = tanh(c)
    m = interp(g, m, 0.99)
    decay = w * 0.01
    update = update + decay
    update = update * lr
    return update, m
