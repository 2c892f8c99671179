"""Lion on the hidden matrices, AdamW on embeddings, the head and vectors (a role candidate)."""


def lion(w, g, lr, m):
    """Lion (Chen et al. 2023): sign of an interpolation, a slower momentum, decoupled weight decay."""
    c = interp(g, m, 0.9)
    update = sign(c)
    m = interp(g, m, 0.99)
    decay = w * 0.01
    update = update + decay
    update = update * lr
    return update, m


def adamw(w, g, lr, step, m, v):
    """AdamW (torch.optim.AdamW defaults: betas 0.9, 0.999, eps 1e-8, decoupled weight decay 0.01)."""
    m = interp(g, m, 0.9)
    g2 = square(g)
    v = interp(g2, v, 0.999)
    mhat = bias_correct(m, 0.9, step)
    vhat = bias_correct(v, 0.999, step)
    d = sqrt(vhat)
    d = d + 1e-08
    update = mhat / d
    decay = w * 0.01
    update = update + decay
    update = update * lr
    return update, m, v


roles = {"hidden": lion, "default": adamw}
