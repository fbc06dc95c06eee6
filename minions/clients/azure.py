"""Azure OpenAI through the openai SDK's `AsyncAzureOpenAI`: the same wire format as OpenAI, reached at
{endpoint}/openai/deployments/{deployment}/chat/completions?api-version=..., with the key in an
`api-key` header. The model in `azure/NAME` is the deployment's name; the request rules (reasoning
model or not) follow that name, so name deployments after their model (e.g. "gpt-5-mini")."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from minions import errors
from minions.clients.openai import OpenAIClient

if TYPE_CHECKING:  # the type only: spec.py reaches this module through the wire registry
    from minions.clients.spec import ProviderSpec


class AzureOpenAIClient(OpenAIClient):
    def __init__(self, deployment: str, *, spec: ProviderSpec, endpoint: str | None = None,
                 api_version: str | None = None, base_url: str | None = None, **kw: Any):
        # base_url= (a whole endpoint URL) is accepted as the endpoint, like the other providers' override.
        self._endpoint = endpoint or base_url or (os.environ.get(spec.endpoint_env) if spec.endpoint_env else None)
        self._api_version = api_version or (os.environ.get(spec.api_version_env) if spec.api_version_env else None)
        for value, env, arg in ((self._endpoint, spec.endpoint_env, "endpoint"),
                                (self._api_version, spec.api_version_env, "api_version")):
            if not value:
                raise errors.ConfigError(f"Azure OpenAI needs its {arg}: set the {env} environment variable "
                                         f"(export {env}=...) or pass {arg}= to the client.")
        kw.setdefault("api_key_env", spec.api_key_env)
        super().__init__(deployment, provider_name=spec.name, **kw)

    def _make_sdk(self, openai: Any, key: str, base_url: str | None) -> Any:
        return openai.AsyncAzureOpenAI(api_key=key, azure_endpoint=self._endpoint, api_version=self._api_version,
                                       azure_deployment=self.model, max_retries=0, timeout=self.retry.timeout,
                                       http_client=self._http_client(openai))
