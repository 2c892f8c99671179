def laprop(w, g, lr, step, m, v):
    """LaProp (Ziyin et al. 2020): momentum over the RMSprop-normalized gradient, the lr inside the momentum.

    pytorch_optimizer's LaProp defaults: betas 0.9, 0.999, the denominator sqrt(v + 1e-15) + 1e-15
    before its bias correction, no weight decay. The momentum's bias correction is 1 - 0.9 ** step, which is
    pytorch_optimizer's moving average of the lr divided by the lr while the lr is constant.
    """
    g2 = square(g)
    v = interp(g2, v, 0.999)
    d = v + 1e-15
    d = sqrt(d)
    d = d + 1e-15
    k = bias_correct(1.0, 0.999, step)
    k = sqrt(k)
    d = d * k
    n = g / d
    n = n * lr
    m = interp(n, m, 0.9)
    update = bias_correct(m, 0.9, step)
    return update, m, v
