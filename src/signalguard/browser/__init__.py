"""The browser tab: adapters between the pure core and the page (PyScript/Pyodide).

Shipped to the page inside ``web/app.zip``. The modules are split by what they touch:

- :mod:`~signalguard.browser.config`, :mod:`~signalguard.browser.ports`,
  :mod:`~signalguard.browser.driver`, :mod:`~signalguard.browser.app`,
  :mod:`~signalguard.browser.sync` (the IndexedDB outbox) and :mod:`~signalguard.browser.generation`
  (the engine tied to the guard, fed by the market feed both hosts share,
  :mod:`signalguard.market.feed`) are plain Python: they run (and are tested) in CPython too, against
  the ports' protocols.
- :mod:`~signalguard.browser.dom` and :mod:`~signalguard.browser.jsbridge` implement the ports on the
  page's objects, which they are *handed*; they import nothing from the platform.
- :mod:`~signalguard.browser.main` is the only module that imports ``js`` and ``pyodide``: it builds
  the adapters from the page's globals and starts the app.
"""
