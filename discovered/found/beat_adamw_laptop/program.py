# Found by optsearch: runs/beat_adamw#34, simplified exactly; report in REPORT.md.
def beat_adamw_laptop(w, g, lr, step, s1, s2):
    v1 = interp(g, s1, 0.9)
    v2 = bias_correct(v1, 0.9, step)
    v3 = square(g)
    v4 = interp(v3, s2, 0.999)
    v5 = bias_correct(v4, 0.999, step)
    v6 = sqrt(v5)
    v7 = v6 + 1e-08
    v8 = v2 / v7
    v9 = rows(w)
    v10 = v9 * 0.005
    v11 = v8 + v10
    v12 = v11 * lr
    return v12, v1, v4


def adamw(w, g, lr, step, m, v):
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


roles = {"hidden": beat_adamw_laptop, "default": adamw}
