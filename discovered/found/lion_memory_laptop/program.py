# Found by optsearch: runs/lion_memory_laptop#140, simplified exactly; report in REPORT.md.
def lion_memory_laptop(w, g, lr, step, s1):
    v1 = bias_correct(g, 0.9277, step)
    v2 = square(g)
    v3 = interp(v2, s1, 0.999606)
    v4 = sqrt(v3)
    v5 = v1 / v4
    v6 = 1.71e-08 + v5
    v7 = v6 + w
    v8 = v7 * lr
    v9 = v8 * v7
    return v8, v9
