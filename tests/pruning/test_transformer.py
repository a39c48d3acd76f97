"""Transformers pruned by whole attention heads and MLP neurons per block: counts, shapes, replay, MACs."""

from __future__ import annotations

import copy
import json

import pytest
import torch
import torchvision
from helpers import assert_replays

from moprune.measure import count_complexity
from moprune.pruning import (HeadAttention, apply_plan, discover_groups, find_sites, global_plan, prunable_form,
                             replay_history, search_units)
from moprune.pruning.transformer import NEURON_MULTIPLE, kept_count

X = torch.randn(2, 3, 32, 32)
BLOCK0 = "encoder.layers.encoder_layer_0"
BLOCK1 = "encoder.layers.encoder_layer_1"


def tiny_vit() -> torch.nn.Module:
    torch.manual_seed(0)
    model = torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=4,
                                                 hidden_dim=32, mlp_dim=64, num_classes=10).eval()
    prunable_form(model)
    return model


def test_prunable_form_keeps_the_outputs_of_torchvisions_multihead_attention():
    torch.manual_seed(0)
    model = torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=4,
                                                 hidden_dim=32, mlp_dim=64, num_classes=10).eval()
    before = model(X)
    assert prunable_form(model) == 2
    assert all(isinstance(model.get_submodule(f"{b}.self_attention"), HeadAttention) for b in (BLOCK0, BLOCK1))
    torch.testing.assert_close(model(X), before, rtol=1e-5, atol=1e-6)


def test_each_block_is_two_groups_heads_and_mlp_neurons_and_block_granularity_ties_them():
    model = tiny_vit()
    groups = discover_groups(model, X[:1])
    assert [(g.root, g.kind, g.channels) for g in groups] == [
        (f"{BLOCK0}.self_attention", "heads", 4), (f"{BLOCK0}.mlp", "neurons", 64),
        (f"{BLOCK1}.self_attention", "heads", 4), (f"{BLOCK1}.mlp", "neurons", 64)]
    units = search_units(model, groups, "block", X[:1])
    assert [(u.name, u.roots) for u in units] == [
        (BLOCK0, (f"{BLOCK0}.self_attention", f"{BLOCK0}.mlp")), (BLOCK1, (f"{BLOCK1}.self_attention", f"{BLOCK1}.mlp"))]


def test_head_counts_after_pruning_match_the_plan_and_attention_keeps_its_shape():
    model = tiny_vit()
    plan = {f"{BLOCK0}.self_attention": 0.5, f"{BLOCK1}.self_attention": 0.25, f"{BLOCK0}.mlp": 0.5}
    pruned = apply_plan(model, plan, X[:1])
    a0, a1 = (pruned.model.get_submodule(f"{b}.self_attention") for b in (BLOCK0, BLOCK1))
    assert (a0.num_heads, a1.num_heads) == (2, 3)
    assert (a0.head_dim, a1.head_dim) == (8, 8), "whole heads go; the head size stays"
    assert a0.q.out_features == a0.k.out_features == a0.v.out_features == a0.out_proj.in_features == 16
    assert pruned.model.get_submodule(f"{BLOCK0}.mlp.0").out_features == 32
    assert pruned.model.get_submodule(f"{BLOCK1}.mlp.0").out_features == 64
    assert pruned.channels[f"{BLOCK0}.self_attention"] == 2 and pruned.channels[f"{BLOCK0}.mlp"] == 32
    tokens = torch.randn(2, 17, 32)
    out, weights = a0(tokens, tokens, tokens, need_weights=False)
    assert out.shape == (2, 17, 32) and weights is None
    assert pruned.model(X).shape == (2, 10)
    assert model.get_submodule(f"{BLOCK0}.self_attention").num_heads == 4, "the dense model is untouched"


def test_the_kept_heads_are_the_largest_by_their_weights_norm():
    model = tiny_vit()
    attention = model.get_submodule(f"{BLOCK0}.self_attention")
    with torch.no_grad():  # make head 2 the strongest by far, head 0 the weakest
        for proj in (attention.q, attention.k, attention.v):
            proj.weight[16:24] *= 10
            proj.weight[0:8] *= 0.01
    pruned = apply_plan(model, {f"{BLOCK0}.self_attention": 0.75}, X[:1])
    assert pruned.history == [{"site": f"{BLOCK0}.self_attention", "kind": "heads", "keep": [2]}]


def test_a_plan_that_would_leave_no_head_keeps_one_and_a_ratio_of_one_is_refused_clearly():
    site = next(s for s in find_sites(tiny_vit()) if s.kind == "heads")
    assert kept_count(site, 0.95) == 1, "four heads at 0.95 round to none: one is kept"
    with pytest.raises(ValueError, match=r"ratio 1.0 would remove every head; ratios are in \[0, 1\)"):
        kept_count(site, 1.0)
    pruned = apply_plan(tiny_vit(), {f"{BLOCK0}.self_attention": 0.95}, X[:1])
    assert pruned.model.get_submodule(f"{BLOCK0}.self_attention").num_heads == 1
    assert pruned.model(X).shape == (2, 10)


def test_mlp_widths_snap_to_multiples_that_kernels_like():
    site = next(s for s in find_sites(tiny_vit()) if s.kind == "neurons")
    assert kept_count(site, 0.3) % NEURON_MULTIPLE == 0 and kept_count(site, 0.3) == 48  # 44.8 -> 48
    assert kept_count(site, 0.3, round_to=16) == 48 and kept_count(site, 0.6, round_to=16) == 32
    assert kept_count(site, 0.99) == NEURON_MULTIPLE, "never below one multiple"


def test_history_is_json_and_replays_to_identical_outputs():
    model = tiny_vit()
    plan = {g.root: r for g, r in zip(discover_groups(model, X[:1]), (0.5, 0.3, 0.25, 0.6))}
    pruned = apply_plan(model, plan, X[:1])
    history = json.loads(json.dumps(pruned.history))
    fresh = torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=4,
                                                 hidden_dim=32, mlp_dim=64, num_classes=10)
    prunable_form(fresh)
    replay_history(fresh, history, X[:1])
    fresh.load_state_dict(pruned.model.state_dict())  # strict: every shape matches
    assert torch.equal(fresh.eval()(X), pruned.model(X))


def test_pruning_heads_and_neurons_removes_macs_including_the_attention_products():
    model = tiny_vit()
    dense = count_complexity(model, X)
    pruned = apply_plan(model, {g.root: 0.5 for g in discover_groups(model, X[:1])}, X[:1])
    after = count_complexity(pruned.model, X)
    assert after.macs < 0.65 * dense.macs and after.params < dense.params
    # 17 tokens (16 patches + class token), 4 heads of 8: q.k and attn.v per block, per sample
    attention_products = 2 * (2 * 4 * 17 * 17 * 8)
    linears_only = sum(m.in_features * m.out_features for m in model.modules() if isinstance(m, torch.nn.Linear)
                       and m is not model.heads.head) * 17 + 32 * 10
    conv = 32 * 3 * 8 * 8 * 16
    assert dense.macs >= attention_products + linears_only + conv


def test_iterative_steps_end_at_the_one_shot_counts():
    model = tiny_vit()
    plan = {g.root: 0.5 for g in discover_groups(model, X[:1])}
    calls = []
    stepped = apply_plan(model, plan, X[:1], steps=2, between=lambda m, k: calls.append(k))
    one_shot = apply_plan(model, plan, X[:1])
    assert calls == [0] and stepped.channels == one_shot.channels


def test_global_pruning_ranks_heads_and_neurons_across_blocks_and_the_plan_reproduces_it():
    model = tiny_vit()
    groups = discover_groups(model, X[:1])
    with torch.no_grad():  # three of block 1's heads carry almost nothing (scores are normalised per block)
        for proj in ("q", "k", "v"):
            getattr(model.get_submodule(f"{BLOCK1}.self_attention"), proj).weight[8:32].mul_(0.01)
    plan = global_plan(model, groups, X[:1], 0.5, max_ratio=0.8)
    assert plan[f"{BLOCK1}.self_attention"] == 0.75 and plan[f"{BLOCK0}.self_attention"] == 0.25
    pruned = apply_plan(model, plan, X[:1])
    heads = sum(pruned.channels[g.root] for g in groups if g.kind == "heads")
    assert heads == 4, "half of the eight heads are left"
    assert copy.deepcopy(pruned.model)(X).shape == (2, 10)


def test_hugging_face_vit_layout_prunes_by_head_and_neuron_and_replays():
    transformers = pytest.importorskip("transformers")
    from moprune.train import HFClassifier

    def build():
        torch.manual_seed(0)
        config = transformers.ViTConfig(num_labels=3, num_hidden_layers=2, image_size=32, patch_size=8,
                                        hidden_size=32, intermediate_size=64, num_attention_heads=4)
        return HFClassifier(transformers.AutoModelForImageClassification.from_config(config), None).eval()

    model = build()
    groups = discover_groups(model, X[:1])
    assert [(g.kind, g.channels) for g in groups] == [("heads", 4), ("neurons", 64)] * 2
    pruned = apply_plan(model, {groups[0].root: 0.5, groups[1].root: 0.5}, X[:1])
    attention = pruned.model.get_submodule(groups[0].root)
    assert attention.num_attention_heads == 2 and attention.o_proj.in_features == 2 * attention.head_dim
    assert pruned.model(X).shape == (2, 3)
    assert_replays(build, pruned, X)


def test_distilbert_layout_prunes_by_head_and_neuron_and_counts_its_attention():
    transformers = pytest.importorskip("transformers")
    from moprune.train import HFClassifier

    def build():
        torch.manual_seed(0)
        config = transformers.DistilBertConfig(vocab_size=50, n_layers=2, dim=32, n_heads=4, hidden_dim=64,
                                               max_position_embeddings=16, num_labels=2)
        return HFClassifier(transformers.AutoModelForSequenceClassification.from_config(config), 0).eval()

    ids = torch.randint(1, 50, (2, 12))
    model = build()
    dense = count_complexity(model, ids)
    groups = discover_groups(model, ids[:1])
    assert [(g.kind, g.channels) for g in groups] == [("heads", 4), ("neurons", 64)] * 2
    pruned = apply_plan(model, {groups[0].root: 0.5, groups[1].root: 0.5}, ids[:1])
    attention = pruned.model.get_submodule(groups[0].root)
    assert attention.n_heads == 2 and attention.out_lin.in_features == 2 * attention.attention_head_size
    assert pruned.model(ids).shape == (2, 2)
    # q·kᵀ and attn·v of two heads of 8 over 12 tokens, and their q/k/v/out rows and columns, are gone
    assert dense.macs - count_complexity(pruned.model, ids).macs >= 2 * 2 * 12 * 12 * 8 + 12 * 4 * 32 * 16
    assert_replays(build, pruned, ids)
