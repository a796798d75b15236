MISTAKES = [
    ("a forward difference", "gradcheck.py:numerical_gradient", '''
def numerical_gradient(f, x, eps=1e-6):
    work = x.astype(np.float64)
    flat = work.reshape(-1)
    grad = np.zeros(work.size)
    base = float(f(work))
    for i in range(work.size):
        old = flat[i]
        flat[i] = old + eps
        grad[i] = (float(f(work)) - base) / eps
        flat[i] = old
    return grad.reshape(x.shape)
''', "a one-sided difference"),
    ("divided by eps, not 2 eps", "gradcheck.py:numerical_gradient", '''
def numerical_gradient(f, x, eps=1e-6):
    work = x.astype(np.float64)
    flat = work.reshape(-1)
    grad = np.zeros(work.size)
    for i in range(work.size):
        old = flat[i]
        flat[i] = old + eps
        up = float(f(work))
        flat[i] = old - eps
        down = float(f(work))
        flat[i] = old
        grad[i] = (up - down) / eps
    return grad.reshape(x.shape)
''', "dividing by eps instead of 2 * eps"),
    ("the perturbed entry left perturbed", "gradcheck.py:numerical_gradient", '''
def numerical_gradient(f, x, eps=1e-6):
    work = x.astype(np.float64)
    flat = work.reshape(-1)
    grad = np.zeros(work.size)
    for i in range(work.size):
        flat[i] += eps
        up = float(f(work))
        flat[i] -= 2 * eps
        down = float(f(work))
        grad[i] = (up - down) / (2 * eps)
    return grad.reshape(x.shape)
''', "not restoring the perturbed entry"),
    ("x itself perturbed, restored by adding eps back", "gradcheck.py:numerical_gradient", '''
def numerical_gradient(f, x, eps=1e-6):
    flat = x.reshape(-1)
    grad = np.zeros(x.size)
    for i in range(x.size):
        flat[i] += eps
        up = float(f(x))
        flat[i] -= 2 * eps
        down = float(f(x))
        flat[i] += eps
        grad[i] = (up - down) / (2 * eps)
    return grad.reshape(x.shape)
''', "numerical_gradient changed x"),
    ("an upstream gradient of ones", "gradcheck.py:check_layer", '''
def check_layer(layer, x, seed=0, eps=1e-6):
    x = np.asarray(x, dtype=np.float64)
    g = np.ones(layer.forward(x.copy()).shape)
    for p in layer.parameters():
        p.grad[...] = 0
    layer.forward(x.copy())
    dx = layer.backward(g)
    errors = {"x": relative_error(dx, numerical_gradient(lambda v: np.sum(layer.forward(v) * g), x, eps))}
    for name, p in layer.named_parameters():
        analytic = p.grad.copy()
        saved = p.data.copy()

        def loss(value, p=p):
            p.data = value
            return np.sum(layer.forward(x.copy()) * g)

        numeric = numerical_gradient(loss, saved, eps)
        p.data = saved
        errors[name] = relative_error(analytic, numeric)
    return errors
''', "an upstream gradient of ones"),
    ("grads not cleared before the backward", "gradcheck.py:check_layer", '''
def check_layer(layer, x, seed=0, eps=1e-6):
    x = np.asarray(x, dtype=np.float64)
    g = np.random.default_rng(seed).standard_normal(layer.forward(x.copy()).shape)
    layer.forward(x.copy())
    dx = layer.backward(g)
    errors = {"x": relative_error(dx, numerical_gradient(lambda v: np.sum(layer.forward(v) * g), x, eps))}
    for name, p in layer.named_parameters():
        analytic = p.grad.copy()
        saved = p.data.copy()

        def loss(value, p=p):
            p.data = value
            return np.sum(layer.forward(x.copy()) * g)

        numeric = numerical_gradient(loss, saved, eps)
        p.data = saved
        errors[name] = relative_error(analytic, numeric)
    return errors
''', "not clearing the parameters' grads"),
    ("the parameter's loss ignores the perturbed array", "gradcheck.py:check_layer", '''
def check_layer(layer, x, seed=0, eps=1e-6):
    x = np.asarray(x, dtype=np.float64)
    g = np.random.default_rng(seed).standard_normal(layer.forward(x.copy()).shape)
    for p in layer.parameters():
        p.grad[...] = 0
    layer.forward(x.copy())
    dx = layer.backward(g)
    errors = {"x": relative_error(dx, numerical_gradient(lambda v: np.sum(layer.forward(v) * g), x, eps))}
    for name, p in layer.named_parameters():
        numeric = numerical_gradient(lambda value: np.sum(layer.forward(x.copy()) * g), p.data, eps)
        errors[name] = relative_error(p.grad, numeric)
    return errors
''', "ignores the perturbed array"),
    ("parameters perturbed in place and left off by rounding", "gradcheck.py:check_layer", '''
def check_layer(layer, x, seed=0, eps=1e-6):
    x = np.asarray(x, dtype=np.float64)
    g = np.random.default_rng(seed).standard_normal(layer.forward(x.copy()).shape)
    for p in layer.parameters():
        p.grad[...] = 0
    layer.forward(x.copy())
    dx = layer.backward(g)
    errors = {"x": relative_error(dx, numerical_gradient(lambda v: np.sum(layer.forward(v) * g), x, eps))}
    for name, p in layer.named_parameters():
        numeric = np.zeros(p.data.size)
        flat = p.data.reshape(-1)
        for i in range(p.data.size):
            flat[i] += eps
            up = np.sum(layer.forward(x.copy()) * g)
            flat[i] -= 2 * eps
            down = np.sum(layer.forward(x.copy()) * g)
            flat[i] += eps
            numeric[i] = (up - down) / (2 * eps)
        errors[name] = relative_error(p.grad, numeric.reshape(p.data.shape))
    return errors
''', "changed the layer's parameter"),
]

BYPASS = ("gradcheck.py:numerical_gradient", '''
def numerical_gradient(f, x, eps=1e-6):
    from minidl.gradcheck import numerical_gradient as theirs
    return theirs(f, x, eps)
''')
