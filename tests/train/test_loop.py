"""The shared training loop: learns, is reproducible for a seed, and stops on a non-finite loss."""

from __future__ import annotations

import pytest
import torch

from moprune.train import load_data
from moprune.spec import DataSpec
from moprune.train import Distillation, NonFiniteLoss, cosine_lr, distillation_loss, evaluate, train
from tiny_models import small_cnn


@pytest.fixture(scope="module")
def digits():
    return load_data(DataSpec(name="digits", image_size=8), seed=0, device=torch.device("cpu"))


def test_small_cnn_learns_digits(digits):
    torch.manual_seed(0)
    model = small_cnn(10)
    chance = evaluate(model, digits.val)
    train(model, digits.train, steps=150, lr=0.05, batch_size=64, seed=0)
    assert evaluate(model, digits.val) > max(0.9, chance + 0.5)


def test_same_seed_same_weights(digits):
    results = []
    for _ in range(2):
        torch.manual_seed(0)
        model = small_cnn(10)
        train(model, digits.train, steps=10, lr=0.05, batch_size=64, seed=7)
        results.append(model.state_dict())
    assert all(torch.equal(results[0][k], results[1][k]) for k in results[0])


def test_non_finite_loss_stops_with_a_reason(digits):
    torch.manual_seed(0)
    model = small_cnn(10)
    with torch.no_grad():
        model[0].weight.fill_(float("nan"))
    with pytest.raises(NonFiniteLoss, match="non-finite loss"):
        train(model, digits.train, steps=30, lr=0.05, batch_size=64, seed=0)


def test_cosine_schedule_warms_up_and_decays():
    assert cosine_lr(0, 100, 1.0, warmup=10) == pytest.approx(0.1)
    assert cosine_lr(10, 100, 1.0, warmup=10) == pytest.approx(1.0)
    assert cosine_lr(99, 100, 1.0) < 0.01


def test_distillation_loss_is_the_hinton_mix():
    torch.manual_seed(0)
    student, teacher, labels = torch.randn(5, 10), torch.randn(5, 10), torch.randint(0, 10, (5,))
    ce = torch.nn.functional.cross_entropy(student, labels)
    assert torch.equal(distillation_loss(student, teacher, labels, 0.0, 4.0), ce)
    assert float(distillation_loss(student, student, labels, 1.0, 4.0)) == pytest.approx(0.0, abs=1e-6)
    p_t = torch.softmax(teacher / 2.0, dim=1)
    kl = (p_t * (p_t.log() - torch.log_softmax(student / 2.0, dim=1))).sum(dim=1).mean() * 4.0
    assert float(distillation_loss(student, teacher, labels, 0.3, 2.0)) == pytest.approx(float(0.7 * ce + 0.3 * kl),
                                                                                         rel=1e-5)


def test_a_student_learns_from_the_teacher_alone_and_the_teacher_is_untouched(digits):
    torch.manual_seed(0)
    teacher = small_cnn(10)
    train(teacher, digits.train, steps=150, lr=0.05, batch_size=64, seed=0)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    torch.manual_seed(1)
    student = small_cnn(10)
    # alpha 1: the labels carry no weight, so whatever the student learns comes through the teacher's logits
    train(student, digits.train, steps=150, lr=0.05, batch_size=64, seed=3,
          distill=Distillation(teacher, alpha=1.0, temperature=4.0))
    assert evaluate(student, digits.val) > 0.8
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
    assert not teacher.training


def test_alpha_zero_distillation_trains_exactly_as_without_a_teacher(digits):
    results = []
    for distill in (None, Distillation(small_cnn(10), alpha=0.0, temperature=4.0)):
        torch.manual_seed(0)
        model = small_cnn(10)
        train(model, digits.train, steps=10, lr=0.05, batch_size=64, seed=7, distill=distill)
        results.append(model.state_dict())
    assert all(torch.equal(results[0][k], results[1][k]) for k in results[0])


def test_dropout_draws_come_from_the_seed_and_the_callers_random_state_is_left_alone(digits):
    def with_dropout():
        torch.manual_seed(0)
        return torch.nn.Sequential(*small_cnn(10)[:-1], torch.nn.Dropout(0.5), small_cnn(10)[-1])

    results = []
    for noise in (1, 2):
        model = with_dropout()
        torch.manual_seed(100 + noise)  # whatever the caller's generator holds
        before = torch.random.get_rng_state()
        train(model, digits.train, steps=10, lr=0.05, batch_size=64, seed=7)
        assert torch.equal(torch.random.get_rng_state(), before), "the caller's RNG state comes back"
        results.append(model.state_dict())
    assert all(torch.equal(results[0][k], results[1][k]) for k in results[0])
