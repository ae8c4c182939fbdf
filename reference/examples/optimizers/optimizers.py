"""SGD, Momentum, AdaGrad, RMSProp and Adam in NumPy (homework: optimizers)."""

import numpy as np


class SGD:
    def __init__(self, params, lr):
        self.params = params
        self.lr = lr

    def step(self, grads):
        for p, g in zip(self.params, grads, strict=True):
            p -= self.lr * g


class Momentum:
    def __init__(self, params, lr, beta=0.9):
        self.params = params
        self.lr = lr
        self.beta = beta
        self.s = [None for _ in params]

    def step(self, grads):
        for i, (p, g) in enumerate(zip(self.params, grads, strict=True)):
            if self.s[i] is None:
                self.s[i] = g.copy()  # s_1 = g_1
            else:
                self.s[i] = self.beta * self.s[i] + (1 - self.beta) * g
            p -= self.lr * self.s[i]


class AdaGrad:
    def __init__(self, params, lr, eps=1e-6):
        self.params = params
        self.lr = lr
        self.eps = eps
        self.s = [np.zeros_like(p) for p in params]

    def step(self, grads):
        for p, g, s in zip(self.params, grads, self.s, strict=True):
            s += g * g
            p -= self.lr * g / (np.sqrt(s) + self.eps)


class RMSProp:
    def __init__(self, params, lr, beta=0.9, eps=1e-6):
        self.params = params
        self.lr = lr
        self.beta = beta
        self.eps = eps
        self.s = [np.zeros_like(p) for p in params]

    def step(self, grads):
        for p, g, s in zip(self.params, grads, self.s, strict=True):
            s *= self.beta
            s += (1 - self.beta) * g * g
            p -= self.lr * g / (np.sqrt(s) + self.eps)


class Adam:
    def __init__(self, params, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8):
        self.params = params
        self.lr = lr
        self.beta1 = beta1
        self.beta2 = beta2
        self.eps = eps
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]
        self.t = 0

    def step(self, grads):
        self.t += 1
        for p, g, m, v in zip(self.params, grads, self.m, self.v, strict=True):
            m[:] = self.beta1 * m + (1 - self.beta1) * g
            v[:] = self.beta2 * v + (1 - self.beta2) * g * g
            m_hat = m / (1 - self.beta1**self.t)
            v_hat = v / (1 - self.beta2**self.t)
            p -= self.lr * m_hat / (np.sqrt(v_hat) + self.eps)
