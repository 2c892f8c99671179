def prodigy(w, g, lr, step, m, v, s, x0, d, num):
    """Prodigy (Mishchenko & Defazio 2023): Adam whose step size d is estimated from how far the parameters moved along the gradients.

    prodigyopt's defaults: lr 1 (a multiplier of d), betas 0.9, 0.999, beta3 = sqrt(0.999), eps
    1e-8 (times d), d0 1e-6, d_coef 1, unbounded growth, no bias correction, no weight decay.
    x0 keeps the parameter of step 1 (`first` is 1 at step 1 and 0 after). d and num are one
    number each for all parameters (global_sum spans them all), held in state shaped like the
    parameter because the language has no scalar state: two tensors more than prodigyopt keeps.
    d is raised to d0 at step 1 and never falls below it.
    """
    first = 2.0 - step
    first = relu(first)
    start = w * first
    x0 = x0 + start
    d = maximum(d, 1e-06)
    dlr = d * lr
    r = d / 1e-06
    r = r * dlr
    back = x0 - w
    moved = g * back
    q = global_sum(moved)
    q = q * r
    num = num * 0.999499874937461
    num = num + q
    gd = g * d
    m = interp(gd, m, 0.9)
    g2 = square(g)
    dd = d * d
    g2 = g2 * dd
    v = interp(g2, v, 0.999)
    sg = g * r
    s = s * 0.999499874937461
    s = s + sg
    sa = abs(s)
    den = global_sum(sa)
    dhat = num / den
    d = maximum(d, dhat)
    e = d * 1e-08
    h = sqrt(v)
    h = h + e
    u = m / h
    update = u * dlr
    return update, m, v, s, x0, d, num
