def lion_wd2(w, g, lr, m):
    """Lion with weight decay 2.0, its best decay on the small-data ViT (benchmarks/LION_REGIMES.md)."""
    c = interp(g, m, 0.9)
    update = sign(c)
    m = interp(g, m, 0.99)
    decay = w * 2.0
    update = update + decay
    update = update * lr
    return update, m
