_HEAD = '''
def forward(self, x):
    o, _, kh, kw = self.weight.data.shape
    n, g = x.shape[0], self.groups
    oh = conv_out_size(x.shape[2], kh, self.stride, self.padding)
    ow = conv_out_size(x.shape[3], kw, self.stride, self.padding)
    self.x_shape = x.shape
    col = im2col(x, kh, kw, self.stride, self.padding)
    wmat = self.weight.data.reshape(g, o // g, -1)
'''

MISTAKES = [
    ("the bias left out", "conv.py:Conv2D.forward", _HEAD + '''
    self.col = col.reshape(g, -1, n * oh * ow)
    y = np.stack([wmat[i] @ self.col[i] for i in range(g)]).reshape(o, n, oh, ow)
    return y.transpose(1, 0, 2, 3)
''', "forgetting the bias"),
    ("every group reads group 0's channels", "conv.py:Conv2D.forward", _HEAD + '''
    self.col = col.reshape(g, -1, n * oh * ow)
    y = np.stack([wmat[i] @ self.col[0] for i in range(g)]).reshape(o, n, oh, ow)
    return y.transpose(1, 0, 2, 3) + self.bias.data.reshape(1, o, 1, 1)
''', "every group reading group 0's input channels"),
    ("the rows dealt out to the groups in turn", "conv.py:Conv2D.forward", _HEAD + '''
    self.col = col.reshape(-1, g, n * oh * ow).transpose(1, 0, 2)
    y = np.stack([wmat[i] @ self.col[i] for i in range(g)]).reshape(o, n, oh, ow)
    return y.transpose(1, 0, 2, 3) + self.bias.data.reshape(1, o, 1, 1)
''', "splitting the column matrix's rows into groups the wrong way"),
    ("Y reshaped to (N, O, OH, OW) without the transpose", "conv.py:Conv2D.forward", _HEAD + '''
    self.col = col.reshape(g, -1, n * oh * ow)
    y = np.stack([wmat[i] @ self.col[i] for i in range(g)]).reshape(n, o, oh, ow)
    return y + self.bias.data.reshape(1, o, 1, 1)
''', "reshaping Y (O, N*OH*OW) straight to (N, O, OH, OW)"),
    ("the bias added along the last axis, as in Linear", "conv.py:Conv2D.forward", _HEAD + '''
    self.col = col.reshape(g, -1, n * oh * ow)
    y = np.stack([wmat[i] @ self.col[i] for i in range(g)]).reshape(o, n, oh, ow)
    return y.transpose(1, 0, 2, 3) + self.bias.data
''', "adding the bias along the last axis"),
]

BYPASS = ("conv.py:Conv2D.forward", '''
def forward(self, x):
    from minidl.kernels import reference
    y, (self.x_shape, self.col) = reference.conv2d_forward(x, self.weight.data, self.stride, self.padding, self.groups)
    return y + self.bias.data.reshape(1, -1, 1, 1)
''')
