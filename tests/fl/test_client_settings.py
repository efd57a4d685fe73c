"""A client's settings: the base, then the run config, then the server's round config (only keys
that are settings), parsed once per distinct combination of layers."""

from flwr.app import ConfigRecord, Context, Message, RecordDict
from in_process_grid import server_identity

from fl.client_app import config_layer, settings_for
from fl.settings import FederatedSettings


def _context(run_config: dict) -> Context:
    return Context(run_id=1, node_id=5, node_config={}, state=RecordDict(), run_config=run_config)


def _message(config: dict) -> Message:
    with server_identity():
        content = RecordDict({"config": ConfigRecord(config)})
        return Message(content, dst_node_id=5, message_type="train")


def test_layers_override_in_order_and_unknown_server_keys_are_ignored():
    base = config_layer(FederatedSettings.create(lr=0.1, local_epochs=1).to_run_config())
    settings = settings_for(base, _context({"local-epochs": 3}), _message({"lr": 0.5}))
    assert settings.lr == 0.5 and settings.local_epochs == 3
    with_extra = settings_for(
        base, _context({"local-epochs": 3}), _message({"lr": 0.5, "server-round": 7})
    )
    assert with_extra is settings  # a strategy's own keys are not settings
    assert settings_for(base, _context({}), None).local_epochs == 1


def test_the_same_layers_share_one_settings_object_and_other_layers_get_their_own():
    base = config_layer(FederatedSettings().to_run_config())
    first = settings_for(base, _context({"lr": 0.2}), _message({"local-epochs": 2}))
    assert settings_for(base, _context({"lr": 0.2}), _message({"local-epochs": 2})) is first
    other = settings_for(base, _context({"lr": 0.3}), _message({"local-epochs": 2}))
    assert other is not first and other.lr == 0.3 and first.lr == 0.2
