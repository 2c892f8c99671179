def cautious_lion(w, g, lr, m):
    """Cautious Lion (Liang et al. 2024): Lion whose update keeps only the coordinates where it agrees in sign with the gradient.

    Lion with betas 0.9, 0.99 and decoupled weight decay 0.01; the mask is pytorch_optimizer's
    (and C-Optim's): 1 where sign(c) * g > 0, scaled by numel / (count + 1), applied before the
    decay. `one` is a tensor of ones, so dot(one, one) is the element count.
    """
    c = interp(g, m, 0.9)
    u = sign(c)
    m = interp(g, m, 0.99)
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
    return update, m
