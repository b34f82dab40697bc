"""Server-rendered HTML without a template engine, escaped by default.

:func:`render` fills a ``str.format`` template and escapes every value that is not already :class:`Html`,
so text from Kafka records or settings can only reach a page as text. Pages are Swedish (``lang="sv"``),
with one ``h1``, landmarks, labelled form fields and a skip link.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape

from hub.web.scope import Scope


class Html(str):
    """Markup that is safe to insert as is (built by :func:`render` or :func:`join`)."""

    __slots__ = ()


def h(value: object) -> str:
    """``value`` as HTML text (``<``, ``&``, quotes escaped)."""
    return escape(str(value), quote=True)


def render(template: str, /, **values: object) -> Html:
    """``template.format(**values)`` with every non-:class:`Html` value escaped."""
    return Html(template.format(**{k: v if isinstance(v, Html) else h(v) for k, v in values.items()}))


def join(parts: Iterable[Html], sep: str = "") -> Html:
    return Html(sep.join(parts))


def table(caption: str, headers: Sequence[str], rows: Iterable[Sequence[object]], *, css: str = "") -> Html:
    """A data table with a caption and column headers (the first cell of a row is its row header)."""
    head = join(render("<th scope=\"col\">{h}</th>", h=x) for x in headers)
    body = join(
        render("<tr><th scope=\"row\">{first}</th>{rest}</tr>", first=row[0],
               rest=join(render("<td>{c}</td>", c=c) for c in row[1:]))
        for row in rows
    )  # fmt: skip
    return render('<table class="{css}"><caption>{caption}</caption><thead><tr>{head}</tr></thead>'
                  "<tbody>{body}</tbody></table>", css=css, caption=caption, head=head, body=body)  # fmt: skip


_LAYOUT = """<!DOCTYPE html>
<html lang="sv">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} – Samverkan Hub</title>
<link rel="stylesheet" href="/static/app.css">
<script src="/static/app.js" defer></script>
</head>
<body>
<a class="skip" href="#main">Till innehållet</a>
<header class="top">
<p class="brand">Samverkan Hub</p>
{nav}
</header>
<main id="main" tabindex="-1">
{body}
</main>
</body>
</html>
"""


def _nav(scope: Scope | None, current: str) -> Html:
    if scope is None:
        return Html("")
    links = join(
        render('<li><a href="{p}"{cur}>{t}</a></li>', p=path, t=text,
               cur=Html(' aria-current="page"') if path == current else Html(""))
        for path, text in scope.pages()
    )  # fmt: skip
    who = scope.user.display_name or scope.username
    return render(
        '<nav aria-label="Huvudmeny"><ul>{links}</ul></nav>'
        '<div class="who"><span>Inloggad som <strong>{who}</strong></span>'
        '<form method="post" action="/logout"><button type="submit">Logga ut</button></form></div>',
        links=links, who=who,
    )  # fmt: skip


def layout(title: str, body: Html, scope: Scope | None = None, current: str = "") -> Html:
    return render(_LAYOUT, title=title, body=body, nav=_nav(scope, current))


def login_page(error: str | None = None, next_path: str = "", username: str = "") -> Html:
    message = render('<p class="error" role="alert">{e}</p>', e=error) if error else Html("")
    body = render(
        "<h1>Logga in</h1>"
        "<p>Logga in med det användarnamn och lösenord du fått av hubbens förvaltning.</p>"
        "{message}"
        '<form method="post" action="/login" class="login">'
        '<input type="hidden" name="next" value="{next}">'
        '<p><label for="username">Användarnamn</label>'
        '<input id="username" name="username" autocomplete="username" required value="{username}"></p>'
        '<p><label for="password">Lösenord</label>'
        '<input id="password" name="password" type="password" autocomplete="current-password" required></p>'
        '<p><button type="submit">Logga in</button></p>'
        "</form>",
        message=message, next=next_path, username=username,
    )  # fmt: skip
    return layout("Logga in", body)


_ERRORS = {
    401: ("Inloggning krävs", "Du behöver logga in för att se den här sidan."),
    403: ("Åtkomst nekad", "Ditt konto har inte behörighet till den här sidan. Du ser bara det som din "
                           "mottagare och kommun har rätt att ta del av."),
    404: ("Sidan finns inte", "Adressen leder inte till någon sida."),
    429: ("För många försök", "För många misslyckade inloggningar. Vänta en stund och försök igen."),
    503: ("Tillfälligt otillgänglig", "Hubbens datakälla (Kafka) svarar inte just nu. Försök igen om en stund."),
}  # fmt: skip


def error_page(status: int, scope: Scope | None = None) -> Html:
    title, text = _ERRORS.get(status, ("Något gick fel", "Försök igen om en stund."))
    body = render('<h1>{title}</h1><p>{text}</p><p class="status">HTTP {status}</p>{home}',
                  title=title, text=text, status=status,
                  home=render('<p><a href="{p}">Till din startsida</a></p>', p=scope.home()) if scope
                  else render('<p><a href="/login">Logga in</a></p>'))  # fmt: skip
    return layout(title, body, scope)
