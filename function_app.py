"""The Cryptlet Fabric function app: builds the FunctionApp and registers the blueprints."""

import azure.functions as func

from functions.attestation import bp as attestation
from functions.cryptlets import bp as cryptlets
from functions.events import bp as events
from functions.health import bp as health
from functions.keys import bp as keys
from functions.ledger import bp as ledger
from functions.operations import bp as operations
from functions.policy import bp as policy
from functions.requests import bp as requests
from functions.subscriptions import bp as subscriptions

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
for blueprint in (health, operations, cryptlets, ledger, requests, attestation, keys, policy):
    app.register_functions(blueprint)
app.register_functions(subscriptions)
app.register_functions(events)
