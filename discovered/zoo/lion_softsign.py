def lion_softsign(w, g, lr, m):
    """Lion-kappa with kappa(x) = |x| - t * log(1 + |x| / t) (t = 0.001): sign becomes its gradient
    softsign(x / t) = x / (t + |x|), a smooth sign with polynomial rather than exponential tails."""
    c = interp(g, m, 0.9)
    c = c / 0.001
    update = softsign(c)
    m = interp(g, m, 0.99)
    decay = w * 0.01
    update = update + decay
    update = update * lr
    return update, m
