_HEAD = '''
def backward(self, dy):
    o, _, kh, kw = self.weight.data.shape
    g = self.groups
    dy_mat = dy.transpose(1, 0, 2, 3).reshape(g, o // g, -1)
    wmat = self.weight.data.reshape(g, o // g, -1)
'''
_DW = '''
    self.weight.grad += np.stack([dy_mat[i] @ self.col[i].T for i in range(g)]).reshape(self.weight.data.shape)
'''
_DB = '''
    self.bias.grad += dy.sum(axis=(0, 2, 3))
'''
_DX = '''
    dcol = np.stack([wmat[i].T @ dy_mat[i] for i in range(g)])
    return col2im(dcol.reshape(-1, dcol.shape[2]), self.x_shape, kh, kw, self.stride, self.padding)
'''

MISTAKES = [
    ("grads overwritten, not accumulated", "conv.py:Conv2D.backward", _HEAD + '''
    self.weight.grad = np.stack([dy_mat[i] @ self.col[i].T for i in range(g)]).reshape(self.weight.data.shape)
    self.bias.grad = dy.sum(axis=(0, 2, 3))
''' + _DX, "overwriting .grad instead of adding to it"),
    ("db summed over the batch only, as in Linear", "conv.py:Conv2D.backward", _HEAD + _DW + '''
    self.bias.grad += dy.sum(axis=0)
''' + _DX, "summing dy over the batch only"),
    ("db the mean over the pixels", "conv.py:Conv2D.backward", _HEAD + _DW + '''
    self.bias.grad += dy.sum(axis=0).mean(axis=(1, 2))
''' + _DX, "the mean over the pixels instead of the sum"),
    ("dW not split by group", "conv.py:Conv2D.backward", _HEAD + '''
    col = self.col.reshape(-1, self.col.shape[-1])
    self.weight.grad += (dy_mat.reshape(o, -1) @ col.T).reshape(self.weight.data.shape)
''' + _DB + _DX, "computing dW without splitting it by group"),
    ("every group's dY against group 0's columns", "conv.py:Conv2D.backward", _HEAD + '''
    self.weight.grad += np.stack([dy_mat[i] @ self.col[0].T for i in range(g)]).reshape(self.weight.data.shape)
''' + _DB + _DX, "every group's dY against group 0's columns"),
    ("dW transposed", "conv.py:Conv2D.backward", _HEAD + '''
    self.weight.grad += np.stack([self.col[i] @ dy_mat[i].T for i in range(g)]).reshape(self.weight.data.shape)
''' + _DB + _DX, "reshaping the transposed product"),
    ("dx by inverting im2col: averaging the overlaps", "conv.py:Conv2D.backward", _HEAD + _DW + _DB + '''
    dcol = np.stack([wmat[i].T @ dy_mat[i] for i in range(g)])
    dcol = dcol.reshape(-1, dcol.shape[2])
    args = (self.x_shape, kh, kw, self.stride, self.padding)
    count = col2im(np.ones_like(dcol), *args)
    return col2im(dcol, *args) / np.maximum(count, 1)
''', "dividing by the number of windows covering each pixel"),
]

BYPASS = ("conv.py:Conv2D.backward", '''
def backward(self, dy):
    from minidl.kernels import reference
    col = self.col.reshape(-1, self.col.shape[-1])
    dw, dx = reference.conv2d_backward(dy, (self.x_shape, col), self.weight.data, self.stride, self.padding,
                                       self.groups)
    self.weight.grad += dw
    self.bias.grad += dy.sum(axis=(0, 2, 3))
    return dx
''')
