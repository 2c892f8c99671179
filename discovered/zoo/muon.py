def muon(w, g, lr, m):
    """Muon (torch.optim.Muon defaults): Nesterov momentum 0.95, orthogonalized by 5 Newton-Schulz
    steps with coefficients (3.4445, -4.775, 2.0315) and eps 1e-7, lr scaled by max(1, rows/cols)**0.5
    (`adjust_lr_fn=None`), decoupled weight decay 0.1 at the unscaled lr. For 2-D (hidden) matrices;
    on a vector (one row) the orthogonalized momentum is the normalised momentum times 0.70 (the
    Newton-Schulz polynomial's 5th iterate at 1).

    torch keeps m <- 0.95 m + 0.05 g and orthogonalizes Nesterov's 0.05 g + 0.95 m (the new m),
    which is 0.0975 g + 0.9025 m with the old m: `interp(g, m, 0.9025)`, Muon's update in one op.
    """
    u = interp(g, m, 0.9025)
    m = interp(g, m, 0.95)
    o = orthogonalize(u, 3.4445, -4.775, 2.0315, 5.0, 1e-07)
    r = rows(w)
    c = cols(w)
    ratio = r / c
    ratio = maximum(ratio, 1.0)
    scale = sqrt(ratio)
    update = o * scale
    decay = w * 0.1
    update = update + decay
    update = update * lr
    return update, m
