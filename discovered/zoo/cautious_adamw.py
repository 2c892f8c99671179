def cautious_adamw(w, g, lr, step, m, v):
    """Cautious AdamW (Liang et al. 2024): AdamW whose update keeps only the coordinates where it agrees in sign with the gradient.

    torch.optim.AdamW's defaults (betas 0.9, 0.999, eps 1e-8, decoupled weight decay 0.01); the
    mask is pytorch_optimizer's (and C-Optim's): 1 where update * g > 0, scaled by
    numel / (count + 1) to keep the update's size, applied before the decay. `one` is a tensor of
    ones, so dot(one, one) is the element count.
    """
    m = interp(g, m, 0.9)
    g2 = square(g)
    v = interp(g2, v, 0.999)
    mhat = bias_correct(m, 0.9, step)
    vhat = bias_correct(v, 0.999, step)
    d = sqrt(vhat)
    d = d + 1e-08
    u = mhat / d
    agree = u * g
    agree = sign(agree)
    mask = relu(agree)
    one = power(g, 0.0)
    n = dot(one, one)
    k = dot(mask, one)
    k = k + 1.0
    scale = n / k
    mask = mask * scale
    u = u * mask
    decay = w * 0.01
    update = u + decay
    update = update * lr
    return update, m, v
