# ruff: noqa: UP008, UP031  (the course's own style: super(Cls, self), %-formatting)
# 手机价格分类（基础版）: the course's baseline script, as students hand it in.
#
# Reproduces the itheima (黑马程序员) PyTorch course's "手机价格分类案例": PhonePriceModel with
# linear1/linear2/linear3 and sigmoid activations, SGD lr=1e-3, CrossEntropyLoss, DataLoader
# batch_size=8, 50 epochs, torch.manual_seed(0), state_dict saved to model/phone-price-model.bin,
# split train_test_split(x, y, train_size=0.8, random_state=88, stratify=y).
# Sources: the course code as published in public copies, e.g. the article
# https://developer.volcengine.com/articles/7591389638226280499 (create_dataset with
# train_size=0.8, random_state=88) and student GitHub copies of the same lesson (PhonePriceModel with
# _activation = torch.sigmoid, SGD lr=1e-3, num_epoch = 50, 'model/phone-price-model.bin',
# stratify=y). Course copies import torchsummary at module level (summary of the network).
# hwgrade's reference example: trained once by grader/datasets/build_examples.py.
import time

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torch.optim as optim
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader, TensorDataset
from torchsummary import summary


# 构建数据集
def create_dataset():
    data = pd.read_csv("data/手机价格预测.csv")
    # 特征值和目标值
    x, y = data.iloc[:, :-1], data.iloc[:, -1]
    x = x.astype(np.float32)
    y = y.astype(np.int64)
    # 数据集划分
    x_train, x_valid, y_train, y_valid = train_test_split(x, y, train_size=0.8, random_state=88, stratify=y)
    # 构建 pytorch 数据集
    train_dataset = TensorDataset(torch.from_numpy(x_train.values), torch.tensor(y_train.values))
    valid_dataset = TensorDataset(torch.from_numpy(x_valid.values), torch.tensor(y_valid.values))
    return train_dataset, valid_dataset, x_train.shape[1], len(np.unique(y))


# 构建网络模型
class PhonePriceModel(nn.Module):
    def __init__(self, input_dim, output_dim):
        super(PhonePriceModel, self).__init__()
        self.linear1 = nn.Linear(input_dim, 128)
        self.linear2 = nn.Linear(128, 256)
        self.linear3 = nn.Linear(256, output_dim)

    def _activation(self, x):
        return torch.sigmoid(x)

    def forward(self, x):
        x = self._activation(self.linear1(x))
        x = self._activation(self.linear2(x))
        output = self.linear3(x)
        return output


# 编写训练函数
def train():
    # 固定随机数种子
    torch.manual_seed(0)
    # 初始化模型
    model = PhonePriceModel(input_dim, class_num)
    # 损失函数
    criterion = nn.CrossEntropyLoss()
    # 优化方法
    optimizer = optim.SGD(model.parameters(), lr=1e-3)
    # 训练轮数
    num_epoch = 50

    for epoch_idx in range(num_epoch):
        # 初始化数据加载器
        dataloader = DataLoader(train_dataset, shuffle=True, batch_size=8)
        # 训练时间
        start = time.time()
        # 计算损失
        total_loss = 0.0
        total_num = 1
        for x, y in dataloader:
            output = model(x)
            # 计算损失
            loss = criterion(output, y)
            # 梯度清零
            optimizer.zero_grad()
            # 反向传播
            loss.backward()
            # 参数更新
            optimizer.step()

            total_num += len(y)
            total_loss += loss.item() * len(y)
        print(
            "epoch: %4s loss: %.2f, time: %.2fs"
            % (epoch_idx + 1, total_loss / total_num, time.time() - start)
        )
    # 模型保存
    torch.save(model.state_dict(), "model/phone-price-model.bin")


# 编写评估函数
def test():
    # 加载模型
    model = PhonePriceModel(input_dim, class_num)
    model.load_state_dict(torch.load("model/phone-price-model.bin"))
    # 构建加载器
    dataloader = DataLoader(valid_dataset, batch_size=8, shuffle=False)
    # 评估测试集
    correct = 0
    for x, y in dataloader:
        output = model(x)
        y_pred = torch.argmax(output, dim=1)
        correct += (y_pred == y).sum()
    print("Acc: %.5f" % (correct.item() / len(valid_dataset)))


if __name__ == "__main__":
    # 数据集
    train_dataset, valid_dataset, input_dim, class_num = create_dataset()
    # 模型结构
    summary(PhonePriceModel(input_dim, class_num), input_size=(input_dim,), batch_size=16)
    train()
    test()
