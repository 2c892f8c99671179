# Found by optsearch: runs/rediscover_lion_laptop#45, simplified exactly; report in REPORT.md.
def rediscover_lion_laptop(w, g, lr, step, s1, s2):
    v1 = max_abs(w)
    v2 = v1 * 0.01
    v3 = interp(g, s1, 0.849)
    v4 = bias_correct(v3, 0.9, step)
    v5 = square(g)
    v6 = interp(v5, s2, 0.999353)
    v7 = bias_correct(v6, 0.999, step)
    v8 = sqrt(v7)
    v9 = v8 + 1e-08
    v10 = v4 / v9
    v11 = v2 + v10
    v12 = v11 * lr
    v13 = interp(g, s1, 0.9)
    v14 = interp(v5, s2, 0.999)
    return v12, v13, v14
