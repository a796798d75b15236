"""cupy.cuda.compiler: the error a kernel that does not compile raises."""


class CompileException(Exception):
    def __init__(self, msg, source, name):
        super().__init__(msg)
        self.source = source
        self.name = name
