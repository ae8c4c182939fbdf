"""Activation functions and their derivatives (homework: activations)."""

import numpy as np


def sigmoid(x):
    # Split by sign so that exp() never overflows.
    x = np.asarray(x, dtype=np.float64)
    z = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + z), z / (1 + z))


def sigmoid_grad(x):
    s = sigmoid(x)
    return s * (1 - s)


def tanh(x):
    return np.tanh(x)


def tanh_grad(x):
    return 1 - np.tanh(x) ** 2


def relu(x):
    return np.maximum(0, x)


def relu_grad(x):
    # The left derivative at 0: relu_grad(0) == 0.
    return (np.asarray(x) > 0).astype(np.float64)


def leaky_relu(x, alpha=0.01):
    return np.where(x > 0, x, alpha * x)


def leaky_relu_grad(x, alpha=0.01):
    return np.where(np.asarray(x) > 0, 1.0, alpha)


def softmax(x, axis=-1):
    # Subtracting the maximum keeps exp() finite for inputs like 1000.
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


if __name__ == "__main__":
    print(softmax(np.array([1000.0, 999.0, -1000.0])))
    print(relu_grad(np.array([-1.0, 0.0, 1.0])))
