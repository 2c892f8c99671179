def adamax(w, g, lr, step, m, u):
    """Adamax (torch.optim.Adamax defaults: betas 0.9, 0.999, eps 1e-8)."""
    m = interp(g, m, 0.9)
    a = abs(g)
    a = a + 1e-08
    u = u * 0.999
    u = maximum(u, a)
    mhat = bias_correct(m, 0.9, step)
    update = mhat / u
    update = update * lr
    return update, m, u
