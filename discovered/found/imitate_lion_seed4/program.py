# Found by optsearch: runs/imitate_lion_seed4#1327, simplified exactly; report in REPORT.md.
def imitate_lion_seed4(w, g, lr, s1):
    v1 = interp(g, s1, 0.9067)
    v2 = sign(v1)
    v3 = 0.5 * w
    v4 = v2 + v3
    v5 = v4 * lr
    v6 = interp(g, s1, 0.9909498999999999)
    return v5, v6
