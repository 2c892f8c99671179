def lion_normalized(w, g, lr, m):
    """Lion-kappa with kappa(x) = sqrt(n) * |x|_2 over each parameter tensor of n elements: sign
    becomes its gradient x / rms(x), an update of RMS 1 like sign's; the weight decay then bounds
    rms(w) <= 1 / weight_decay instead of max |w|."""
    c = interp(g, m, 0.9)
    r = rms(c)
    update = c / r
    m = interp(g, m, 0.99)
    decay = w * 0.01
    update = update + decay
    update = update * lr
    return update, m
