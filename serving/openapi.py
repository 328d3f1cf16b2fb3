"""OpenAPI 3.1 description of every route, served at /openapi.json.

Written by hand rather than generated with sanic-ext: the service has seven
routes, and one more dependency (with its own startup hooks in every worker)
costs more than this file. tests/test_serving.py checks that every route the
app registers appears here, so the two cannot drift apart silently.
"""

from __future__ import annotations

from typing import Any

from serving.config import ServingSettings

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["status", "message"],
            "properties": {
                "status": {"type": "integer"},
                "message": {"type": "string"},
            },
            "additionalProperties": True,
        }
    },
}

_FEATURE_VALUES = {
    "type": "object",
    "description": "Feature name -> value as stored (number, boolean, string, "
    "or null when missing or past the view's TTL).",
    "additionalProperties": {
        "type": ["number", "integer", "boolean", "string", "null"]
    },
}

_AS_OF = {
    "type": "object",
    "description": "Feature view -> event time (ISO-8601) of the values served "
    "from it, null when nothing was served from that view.",
    "additionalProperties": {"type": ["string", "null"], "format": "date-time"},
}

_EXPIRED = {
    "type": "object",
    "description": "Feature view -> event time of rows withheld because they are "
    "older than the view's TTL at the platform clock.",
    "additionalProperties": {"type": "string", "format": "date-time"},
}
_NOT_YET_VALID = {
    "type": "object",
    "description": "Feature view -> event time of rows withheld because they are "
    "later than the platform clock (NOW replaying an earlier instant).",
    "additionalProperties": {"type": "string", "format": "date-time"},
}


def _error(description: str, retry_after: bool = False) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
        },
    }
    if retry_after:
        response["headers"] = {
            "Retry-After": {
                "description": "Seconds to wait before retrying.",
                "schema": {"type": "integer"},
            }
        }
    return response


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": schema}},
    }


_SELECTION_PARAMS = [
    {
        "name": "feature_service",
        "in": "query",
        "required": False,
        "description": "Feature service to serve (default: the churn model's).",
        "schema": {"type": "string"},
    },
    {
        "name": "features",
        "in": "query",
        "required": False,
        "description": "Comma-separated view:feature list instead of a service.",
        "schema": {"type": "string", "example": "subs_profile_fv:monthly_fee"},
    },
]


def openapi_document(settings: ServingSettings) -> dict[str, Any]:
    unavailable = _error("Online store unreachable; retry later.", retry_after=True)
    bad_request = _error("Invalid user id, or unknown feature / feature service "
                         "(the message lists the valid ones).")  # fmt: skip
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "StreamFlow online feature service",
            "version": "1.0.0",
            "description": "Online features for the churn model, read from the "
            "Feast online store (PostgreSQL) through the Feast registry's "
            "definitions.",
        },
        "paths": {
            "/health": {
                "get": {
                    "summary": "Liveness: the process is up.",
                    "operationId": "health",
                    "responses": {
                        "200": _json(
                            "Always, while the process runs.",
                            {
                                "type": "object",
                                "properties": {"status": {"const": "ok"}},
                            },
                        )
                    },
                }
            },
            "/ready": {
                "get": {
                    "summary": "Readiness: registry and online store reachable.",
                    "operationId": "ready",
                    "responses": {
                        "200": _json(
                            "Both reachable.", {"$ref": "#/components/schemas/Ready"}
                        ),
                        "503": {
                            "description": "One of them is not reachable.",
                            "headers": unavailable["headers"],
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/Ready"}
                                }
                            },
                        },
                    },
                }
            },
            "/feature-services": {
                "get": {
                    "summary": "Feature services and views that can be asked for.",
                    "operationId": "feature_services",
                    "responses": {"200": _json("The catalog.", {"type": "object"})},
                }
            },
            "/features": {
                "get": {
                    "summary": "Without a user id: always 400.",
                    "operationId": "features_missing_id",
                    "responses": {"400": _error("The user id is missing.")},
                },
                "post": {
                    "summary": "Features of many users in one call.",
                    "operationId": "features_batch",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/BatchRequest"}
                            }
                        },
                    },
                    "responses": {
                        "200": _json(
                            "One result per requested id, in request order.",
                            {"$ref": "#/components/schemas/BatchResponse"},
                        ),
                        "400": bad_request,
                        "413": _error(
                            f"More than {settings.batch_max} user ids in one batch."
                        ),
                        "503": unavailable,
                    },
                },
            },
            "/features/{user_id}": {
                "get": {
                    "summary": "Features of one user.",
                    "operationId": "features_one",
                    "parameters": [
                        {
                            "name": "user_id",
                            "in": "path",
                            "required": True,
                            "schema": {
                                "type": "string",
                                "minLength": 1,
                                "maxLength": 64,
                            },
                            "example": "7590-VHVEG",
                        },
                        *_SELECTION_PARAMS,
                    ],
                    "responses": {
                        "200": _json(
                            "The user's features.",
                            {"$ref": "#/components/schemas/UserFeatures"},
                        ),
                        "400": bad_request,
                        "404": _error("No selected feature view has this user."),
                        "503": unavailable,
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics of all workers.",
                    "operationId": "metrics",
                    "responses": {
                        "200": {
                            "description": "Prometheus text exposition format.",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document.",
                    "operationId": "openapi",
                    "responses": {"200": _json("OpenAPI 3.1.", {"type": "object"})},
                }
            },
        },
        "components": {
            "schemas": {
                "Error": _ERROR,
                "Ready": {
                    "type": "object",
                    "properties": {
                        "status": {"enum": ["ready", "not ready"]},
                        "checks": {
                            "type": "object",
                            "properties": {
                                "registry": {"type": "string"},
                                "online_store": {"type": "string"},
                            },
                        },
                    },
                },
                "UserFeatures": {
                    "type": "object",
                    "required": ["user_id", "feature_service", "features", "as_of"],
                    "properties": {
                        "user_id": {"type": "string"},
                        "feature_service": {"type": ["string", "null"]},
                        "features": _FEATURE_VALUES,
                        "as_of": _AS_OF,
                        "expired": _EXPIRED,
                        "not_yet_valid": _NOT_YET_VALID,
                    },
                },
                "BatchRequest": {
                    "type": "object",
                    "required": ["user_ids"],
                    "properties": {
                        "user_ids": {
                            "type": "array",
                            "items": {
                                "type": "string",
                                "minLength": 1,
                                "maxLength": 64,
                            },
                            "minItems": 1,
                            "maxItems": settings.batch_max,
                        },
                        "feature_service": {"type": "string"},
                        "features": {
                            "oneOf": [
                                {"type": "string"},
                                {"type": "array", "items": {"type": "string"}},
                            ]
                        },
                    },
                },
                "BatchResponse": {
                    "type": "object",
                    "properties": {
                        "feature_service": {"type": ["string", "null"]},
                        "max_batch": {"type": "integer"},
                        "not_found": {"type": "array", "items": {"type": "string"}},
                        "results": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "user_id": {"type": "string"},
                                    "found": {"type": "boolean"},
                                    "features": {
                                        "oneOf": [_FEATURE_VALUES, {"type": "null"}]
                                    },
                                    "as_of": _AS_OF,
                                    "expired": _EXPIRED,
                                    "not_yet_valid": _NOT_YET_VALID,
                                },
                            },
                        },
                    },
                },
            }
        },
    }
