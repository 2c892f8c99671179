def lion_factored(w, g, lr, mr, mc):
    """Lion with a factored momentum (H-Fac's, Nguyen et al. 2024): m + n numbers per m x n matrix.

    The momentum is kept as its row and column means mr, mc, and used as mr + mc - mean(mr):
    exactly Lion's momentum projected onto matrices of the form a_i + b_j (their best fit in the
    Frobenius norm), because moving averages commute with means. A vector is one row, so for it
    this is Lion itself. Betas 0.9, 0.99 and weight decay 0.01, as Lion.
    """
    m = mr + mc
    mu = mean(mr)
    m = m - mu
    c = interp(g, m, 0.9)
    update = sign(c)
    r = row_mean(g)
    mr = interp(r, mr, 0.99)
    k = col_mean(g)
    mc = interp(k, mc, 0.99)
    decay = w * 0.01
    update = update + decay
    update = update * lr
    return update, mr, mc
