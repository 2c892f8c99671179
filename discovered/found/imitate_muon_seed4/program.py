# Found by optsearch: /tmp/imuon2/muon_evolution_4#379, simplified exactly; report in REPORT.md.
def imitate_muon_seed4(w, g, lr, s1):
    v1 = interp(g, s1, 0.899)
    v2 = orthogonalize(v1, 3.4445, -4.775, 2.0315, 5.0, 1e-07)
    v3 = 0.498 * w
    v4 = v2 + v3
    v5 = v4 * lr
    v6 = interp(g, s1, 0.9415)
    return v5, v6


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


roles = {"hidden": imitate_muon_seed4, "default": adamw}
