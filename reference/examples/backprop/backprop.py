"""Backpropagation by hand for the two-layer sigmoid network (homework: backprop)."""

import numpy as np


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def forward_backward(x, target, W1, b1, W2, b2):
    # Forward: weights in the nn.Linear layout (out, in).
    h = sigmoid(x @ W1.T + b1)
    y = sigmoid(h @ W2.T + b2)
    loss = np.sum((y - target) ** 2) / 2

    # Backward: delta = dL/d(pre-activation).
    delta2 = (y - target) * y * (1 - y)
    delta1 = (delta2 @ W2) * h * (1 - h)
    return {
        "loss": loss,
        "W1": delta1.T @ x,
        "b1": delta1.sum(axis=0),
        "W2": delta2.T @ h,
        "b2": delta2.sum(axis=0),
    }


def softmax_cross_entropy(logits, labels):
    n = logits.shape[0]
    z = logits - logits.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    loss = -log_p[np.arange(n), labels].mean()
    grad = np.exp(log_p)
    grad[np.arange(n), labels] -= 1
    return loss, grad / n


if __name__ == "__main__":
    x = np.array([[0.05, 0.10]])
    target = np.array([[0.01, 0.99]])
    W1 = np.array([[0.15, 0.20], [0.25, 0.30]])
    b1 = np.array([0.35, 0.35])
    W2 = np.array([[0.40, 0.45], [0.50, 0.55]])
    b2 = np.array([0.60, 0.60])
    print(forward_backward(x, target, W1, b1, W2, b2))  # loss 0.2984
