"""How a re-ranker comparison reports the rules a dataset could not support."""

from types import SimpleNamespace

from simulations.rerank_eval import skipped_rules


def request(skipped: dict[str, str] | None) -> SimpleNamespace:
    reranked = None if skipped is None else SimpleNamespace(skipped=skipped)
    return SimpleNamespace(reranked=reranked)


def test_skipped_rules_name_each_rule_and_its_reason():
    requests = [
        request({"freshness": "no created_at", "cascade_price": "no 'price_band'"}),
        request({}),
    ]
    assert skipped_rules(requests) == "freshness: no created_at; cascade_price: no 'price_band'"


def test_a_re_ranker_without_rules_or_without_skips_reports_nothing():
    assert skipped_rules([request(None), request(None)]) == ""
    assert skipped_rules([request({})]) == ""
    assert skipped_rules([]) == ""
