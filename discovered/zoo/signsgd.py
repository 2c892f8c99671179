def signsgd(w, g, lr):
    """signSGD: step along the sign of the gradient."""
    update = sign(g)
    update = update * lr
    return update
