"""Solution to exercise 04: the paper's SGD rule, by hand and as a function."""

# %% exercise
def two_steps_by_hand():
    """w after one and after two steps, from w0 = 2.0 with lr 0.1, momentum 0.9, weight decay 0.0005."""
    # step 1, g = 1.0:   v1 = 0.9 * 0 - 0.0005 * 0.1 * 2.0 - 0.1 * 1.0 = -0.0001 - 0.1 = -0.1001
    #                    w1 = 2.0 + v1 = 1.8999
    # step 2, g = -0.5:  v2 = 0.9 * (-0.1001) - 0.0005 * 0.1 * 1.8999 - 0.1 * (-0.5)
    #                       = -0.09009 - 0.000094995 + 0.05 = -0.040184995
    #                    w2 = w1 + v2 = 1.859715005
    return 1.8999, 1.859715005


# %% exercise
def sgd_step(w, v, grad, lr, momentum=0.9, weight_decay=0.0005):
    """One step of the paper's rule; returns (new w, new v) and leaves the inputs alone."""
    # weight decay is scaled by the learning rate too: the paper's -0.0005 * eps * w
    v = momentum * v - weight_decay * lr * w - lr * grad
    # w moves by the new velocity
    return w + v, v
