"""The translated editions' Sphinx extension (loaded from _config.yml's ``local_extensions``; inert in a build
without ``language`` or ``normbook_language_links``, such as ``make book``).

- ``{glue:text}`` (and the other glue roles) inside a *translated* paragraph render their value. Sphinx's Locale
  transform parses each msgstr as a fresh document; myst-nb's glue roles look for the notebook renderer that
  myst-nb attaches to the notebook's document while parsing it and removes at the end, so in the fresh document
  they find no glue data and render nothing ("No key ... found in glue data"). The parser is wrapped: the
  renderer of the notebook being read is kept for the parses of its translated messages.
- The ``_toc.yml`` part captions are translated. sphinx-external-toc inserts the toctrees in a transform of
  priority 100, after the Locale transform (20) has run, so their captions (extracted into the root page's
  catalog like any message) were never applied; a transform after it applies them.
- Strings that Jupyter Book, sphinx-togglebutton and myst-nb hard-code in English (the site title, "Search this
  book...", "Click to show"/"Click to hide", "Show code cell source") are set per language in a ``config-inited``
  handler that runs before sphinx-togglebutton turns its hints into page scripts (its handler has priority 500).
- A language link on every page to the same page in the other edition (``normbook_language_links``, set by
  ``tools/i18n.py``, which knows where the editions lie relative to each other): in the article header, beside
  the sidebar toggle (visible at every width), and as ``<link rel="alternate" hreflang>``; it is relative, so it
  works from ``file://`` as well as on the web site.
- Interface strings that Sphinx and the themes translate but whose Chinese catalogs lack ("Link to this
  heading", "Color mode", "Launch on") come from ``UI_STRINGS``, as the last fallback of those catalogs.
- The Colab button of a translated edition opens its Colab edition (``normbook_colab_subdir`` of the Colab branch,
  where ``make colab-zh`` writes it beside the English one).
- In the gettext build a ``{glue:figure}`` without its value (a chapter committed unexecuted) keeps its caption,
  so the catalogs never depend on outputs.
- ``normbook_nb_output_folder`` moves myst-nb's folder of executed notebooks and images (by default beside the
  HTML folder, which for an edition published inside another one would land in the published site).
"""
from __future__ import annotations

import gettext
import html
from pathlib import Path

from sphinx import addnodes
from sphinx.locale import init as init_locale
from sphinx.transforms import SphinxTransform
from sphinx.util.i18n import docname_to_domain

TEMPLATES = Path(__file__).resolve().parent / "templates"
LANGUAGE_TEMPLATE = "normbook-language.html"
LINK_TITLES = {"en": "This page in English", "zh_CN": "本页的中文版"}  # in the language the link leads to

# What Jupyter Book, sphinx-togglebutton and myst-nb write in English whatever the language (the theme's own
# strings come from its catalogs). Keys: Sphinx config values; "search_bar_text" is a theme option.
STRINGS = {
    "zh_CN": {
        "html_title": "normbook：可执行的规范化层教科书",
        "search_bar_text": "搜索本书……",
        "togglebutton_hint": "点击展开",
        "togglebutton_hint_hide": "点击收起",
        "nb_code_prompt_show": "显示代码单元",  # myst-nb's hide-input button ("Show code cell {type}")
        "nb_code_prompt_hide": "隐藏代码单元",
    },
}

# Interface strings that the themes and Sphinx translate through their catalogs but whose Chinese catalogs lack
# them; used only where no catalog has a translation (a last fallback). Key: the gettext domain.
UI_STRINGS = {
    "zh_CN": {
        "sphinx": {
            "Link to this heading": "链接到此标题",
            "Link to this image": "链接到此图片",
            "Link to this equation": "链接到此公式",
            "Link to this table": "链接到此表格",
            "Link to this code": "链接到此代码",
            "Link to this definition": "链接到此定义",
            "Color mode": "颜色模式",
            "System Settings": "跟随系统",
            "Language": "语言",
        },
        "booktheme": {
            "Launch on": "启动于",
            "Source repositories": "源码库",
        },
    },
}


# --------------------------------------------------------------------------- per-language strings

def _language_strings(app, config) -> None:
    strings = STRINGS.get(config.language or "", {})
    for name, value in strings.items():
        if name == "search_bar_text":
            options = dict(config.html_theme_options or {})
            options[name] = value
            config.html_theme_options = options
        else:
            config[name] = value
    if config.normbook_language_links or strings:
        if str(TEMPLATES) not in config.templates_path:
            config.templates_path = list(config.templates_path) + [str(TEMPLATES)]


class _Table(gettext.NullTranslations):
    def __init__(self, table: dict):
        super().__init__()
        self._table = table

    def gettext(self, message):
        if message in self._table:
            return self._table[message]
        return super().gettext(message)


def _ui_strings(app) -> None:
    from sphinx.locale import translators

    for domain, table in UI_STRINGS.get(app.config.language or "", {}).items():
        translator = translators.get(("general", domain))
        if translator is not None and not getattr(translator, "_normbook_ui", False):
            translator.add_fallback(_Table(table))
            translator._normbook_ui = True


# --------------------------------------------------------------------------- glue in translated messages

class _RendererKeeper(dict):
    """``document.attributes`` of a notebook being parsed: remembers myst-nb's notebook renderer when it is set."""

    def __init__(self, data, env):
        super().__init__(data)
        self._env = env

    def __setitem__(self, key, value):
        if key == "nb_renderer":
            self._env.temp_data["normbook_nb_renderer"] = value
        super().__setitem__(key, value)


def _patch_notebook_parser() -> None:
    from myst_nb.sphinx_ import Parser

    if getattr(Parser.parse, "_normbook", False):
        return
    original = Parser.parse

    def parse(self, inputstring, document):
        env = getattr(document.settings, "env", None) or self.env
        if document.current_source.endswith("<translated>"):
            renderer = env.temp_data.get("normbook_nb_renderer")
            if renderer is None:  # a Markdown page: nothing glued
                return original(self, inputstring, document)
            document.attributes["nb_renderer"] = renderer
            try:
                return original(self, inputstring, document)
            finally:
                document.attributes.pop("nb_renderer", None)
        env.temp_data.pop("normbook_nb_renderer", None)
        plain = document.attributes
        document.attributes = _RendererKeeper(plain, env)
        try:
            return original(self, inputstring, document)
        finally:
            plain.clear()
            plain.update(document.attributes)
            document.attributes = plain

    parse._normbook = True
    Parser.parse = parse


def _patch_glue_directives() -> None:
    """In the gettext build, a ``{glue:figure}`` whose value is missing (a chapter committed without its outputs)
    still yields its caption, so that the catalogs never depend on outputs: without this the caption would drop
    out of the catalog, and its translation with it."""
    from myst_nb.core.variables import RetrievalError, VariableOutput
    from myst_nb.ext.glue import directives

    if getattr(directives.retrieve_glue_data, "_normbook", False):
        return
    original = directives.retrieve_glue_data

    def retrieve(document, key):
        try:
            return original(document, key)
        except RetrievalError:
            env = getattr(document.settings, "env", None)
            if env is None or env.app.builder.name != "gettext" or "nb_renderer" not in document:
                raise
            return VariableOutput(data={"text/plain": ""}, metadata={}, nb_renderer=document["nb_renderer"],
                                  vtype="glue")

    retrieve._normbook = True
    directives.retrieve_glue_data = retrieve


# --------------------------------------------------------------------------- toctree captions

class TranslateTocCaptions(SphinxTransform):
    """Apply the catalog to the captions of the toctrees that sphinx-external-toc inserted (priority 100)."""

    default_priority = 150  # after InsertToctrees (100), before the toctree collector reads the doctree

    def apply(self, **kwargs) -> None:
        if not self.config.language or self.config.language == "en":
            return
        toctrees = [t for t in self.document.findall(addnodes.toctree) if t.get("caption")]
        if not toctrees:
            return
        domain = docname_to_domain(self.env.docname, self.config.gettext_compact)
        dirs = [str(Path(self.env.srcdir, d)) for d in self.config.locale_dirs]
        catalog, has_catalog = init_locale(dirs, self.config.language, domain)
        if not has_catalog:
            return
        for toctree in toctrees:
            translated = catalog.gettext(toctree["caption"])
            if translated and translated != toctree["caption"]:
                toctree["caption"] = translated
                toctree["rawcaption"] = translated


# --------------------------------------------------------------------------- language links

def _language_links(app, pagename, templatename, context, doctree) -> None:
    links = app.config.normbook_language_links
    if not links:
        return
    up = "../" * pagename.count("/")
    shown = []
    for link in links:
        href = f"{up}{link['prefix']}{pagename}.html"
        shown.append({"href": href, "label": link["label"], "lang": link["lang"],
                      "hreflang": link["lang"].replace("_", "-"), "title": LINK_TITLES.get(link["lang"], "")})
    context["normbook_language_links"] = shown
    context["metatags"] = context.get("metatags", "") + "".join(
        f'\n<link rel="alternate" hreflang="{html.escape(s["hreflang"])}" href="{html.escape(s["href"])}" />'
        for s in shown)
    header = context.get("theme_article_header_start") or []
    if isinstance(header, str):
        header = [h.strip() for h in header.split(",") if h.strip()]
    if LANGUAGE_TEMPLATE not in header:
        context["theme_article_header_start"] = list(header) + [LANGUAGE_TEMPLATE]


def _colab_edition(app, pagename, templatename, context, doctree) -> None:
    """The Colab button of a translated edition opens that edition's Colab notebooks, published in the folder
    ``normbook_colab_subdir`` of the Colab branch (after tools/site_ext.py pointed it at that branch)."""
    sub = app.config.normbook_colab_subdir
    branch = app.config.normbook_colab_branch if "normbook_colab_branch" in app.config else ""
    if not sub or not branch:
        return

    def fix(buttons):
        for button in buttons or []:
            if isinstance(button, dict):
                url = button.get("url", "")
                if "colab.research.google.com" in url and f"/blob/{branch}/{sub}/" not in url:
                    button["url"] = url.replace(f"/blob/{branch}/", f"/blob/{branch}/{sub}/", 1)
                fix(button.get("buttons"))

    fix(context.get("header_buttons"))


def _nb_output_folder(app) -> None:
    folder = app.config.normbook_nb_output_folder
    env = app.env
    if folder and getattr(env, "mystnb_config", None) is not None:
        env.mystnb_config = env.mystnb_config.copy(output_folder=str(Path(folder).resolve()))


def setup(app):
    _patch_notebook_parser()
    _patch_glue_directives()
    app.add_config_value("normbook_language_links", [], "html")
    app.add_config_value("normbook_nb_output_folder", "", "env")
    app.add_config_value("normbook_colab_subdir", "", "html")
    app.connect("config-inited", _language_strings, priority=400)  # before sphinx-togglebutton's (500)
    app.connect("builder-inited", _nb_output_folder, priority=900)  # after myst-nb sets its own (500)
    app.connect("builder-inited", _ui_strings, priority=900)  # after the themes added their catalogs
    app.add_transform(TranslateTocCaptions)
    app.connect("html-page-context", _language_links, priority=900)
    app.connect("html-page-context", _colab_edition, priority=950)  # after tools/site_ext.py's _colab_branch
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1"}
