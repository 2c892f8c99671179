def ademamix(w, g, lr, step, m1, m2, v):
    """AdEMAMix (Pagliardini et al. 2024): Adam's update plus alpha times a much slower momentum.

    betas 0.9, 0.999, 0.9999 (beta3 for the slow momentum m2, not bias-corrected), alpha 5,
    eps 1e-8, decoupled weight decay 0.01; constant alpha and beta3 (pytorch_optimizer's AdEMAMix
    with t_alpha_beta3=None: no warm-up schedulers).
    """
    m1 = interp(g, m1, 0.9)
    m2 = interp(g, m2, 0.9999)
    g2 = square(g)
    v = interp(g2, v, 0.999)
    mhat = bias_correct(m1, 0.9, step)
    slow = m2 * 5.0
    num = mhat + slow
    vhat = bias_correct(v, 0.999, step)
    d = sqrt(vhat)
    d = d + 1e-08
    u = num / d
    decay = w * 0.01
    update = u + decay
    update = update * lr
    return update, m1, m2, v
