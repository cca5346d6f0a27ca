"""The shared test helpers: a trained model is made once per session, and every caller gets its own copy."""

import torch

from tests.helpers import _trained_espcn, trained_espcn


def test_trained_espcn_is_trained_once_and_handed_out_as_copies():
    first = trained_espcn(steps=5)
    hits = _trained_espcn.cache_info().hits
    second = trained_espcn(steps=5)
    assert _trained_espcn.cache_info().hits == hits + 1  # no second training
    assert first is not second
    for a, b in zip(first.parameters(), second.parameters()):
        assert torch.equal(a, b)
    with torch.no_grad():
        next(first.parameters()).add_(1.0)  # a test changing its model...
    assert not torch.equal(next(first.parameters()), next(trained_espcn(steps=5).parameters()))  # ...changes no other
