def muon_wd05(w, g, lr, m):
    """torch.optim.Muon with weight decay 0.5 on a square matrix: Nesterov momentum 0.95, 5
    Newton-Schulz steps with coefficients (3.4445, -4.775, 2.0315) and eps 1e-7, decoupled weight
    decay at the lr. The target of `imitate_muon` (configs/imitate_muon.yaml), whose one hidden
    matrix is 128 x 128: torch's default lr adjustment, max(1, rows/cols)**0.5, is 1 there, so the
    `rows`/`cols` scaling of zoo `muon` cannot be told apart from none and is left out.
    """
    u = interp(g, m, 0.9025)
    m = interp(g, m, 0.95)
    update = orthogonalize(u, 3.4445, -4.775, 2.0315, 5.0, 1e-07)
    decay = w * 0.5
    update = update + decay
    update = update * lr
    return update, m
