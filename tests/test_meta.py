import httpx

from tests.helpers import assert_problem


async def test_health_needs_no_token(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "healthy", "service": "payment-service", "version": "1.0.0"}


async def test_root_names_the_service_and_links_the_docs(client: httpx.AsyncClient) -> None:
    response = await client.get("/")
    assert response.status_code == 200
    assert response.json() == {
        "service": "payment-service",
        "version": "1.0.0",
        "docs": "/docs",
        "redoc": "/redoc",
        "openapi": "/openapi.json",
    }


async def test_docs_load_their_assets_from_this_service(client: httpx.AsyncClient) -> None:
    page = await client.get("/docs")
    assert page.status_code == 200
    assert "/docs-assets/swagger-ui-bundle.js" in page.text
    assert "cdn." not in page.text
    script = await client.get("/docs-assets/swagger-ui-bundle.js")
    assert script.status_code == 200
    assert "SwaggerUIBundle" in script.text
    css = await client.get("/docs-assets/swagger-ui.css")
    assert css.status_code == 200

    redoc = await client.get("/redoc")
    assert redoc.status_code == 200
    assert "/docs-assets/redoc.standalone.js" in redoc.text
    assert "fonts.googleapis" not in redoc.text
    assert (await client.get("/docs-assets/redoc.standalone.js")).status_code == 200


async def test_openapi_declares_the_bearer_scheme_on_api_routes(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    assert schema["components"]["securitySchemes"]["HTTPBearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schema["components"]["securitySchemes"]["HTTPBearer"]["description"],
    }
    assert schema["paths"]["/api/v1/payments/"]["post"]["security"] == [{"HTTPBearer": []}]
    assert "security" not in schema["paths"]["/health"]["get"]


async def test_unknown_route_is_a_problem_404(client: httpx.AsyncClient) -> None:
    body = assert_problem(await client.get("/nope"), 404)
    assert body["type"] == "about:blank"


async def test_wrong_method_is_a_problem_405(client: httpx.AsyncClient) -> None:
    assert_problem(await client.post("/health"), 405)
