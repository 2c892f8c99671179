# Found by optsearch: runs/imitate_lion_seed3#4359, simplified exactly; report in REPORT.md.
def imitate_lion_seed3(w, g, lr, s1):
    v1 = 2.01 * w
    v2 = interp(g, s1, 0.899)
    v3 = sign(v2)
    v4 = v1 + v3
    v5 = v4 * lr
    v6 = interp(g, s1, 0.99021)
    return v5, v6
