def lion_strong_wd(w, g, lr, m):
    """Lion with weight decay 0.5: the paper pairs Lion with 3-10x AdamW's decay (0.1) at a 3-10x smaller lr."""
    c = interp(g, m, 0.9)
    update = sign(c)
    m = interp(g, m, 0.99)
    decay = w * 0.5
    update = update + decay
    update = update * lr
    return update, m
