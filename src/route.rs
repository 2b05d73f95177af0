//! Routes: which action answers a payload. Routes are tried in config order
//! among those on the request's path; the first whose `when` holds wins.

use std::sync::Arc;

use minijinja::Value;

use crate::backend::{Backend, Failure};
use crate::contract::{Event, Open};
use crate::metrics::Handles;
use crate::outcome::NoneReason;
use crate::request_id::RequestId;
use crate::template::{ConditionId, TemplateId, Templates};

/// All routes of a config, grouped by path, with the templates they use.
#[derive(Debug)]
pub struct Router {
    templates: std::sync::Arc<Templates>,
    /// Each path with its routes, paths in config order. A site has a few
    /// paths: comparing them costs less than hashing one.
    by_path: Vec<(Box<str>, Vec<Route>)>,
}

/// One `[[routes]]` entry.
#[derive(Debug)]
pub struct Route {
    /// The route's name, for logs (`name`, or `routes[N]`).
    pub name: Box<str>,
    /// The condition; `None` matches every payload.
    pub when: Option<ConditionId>,
    /// The condition as written, for `simulate` and logs.
    pub when_source: Option<Box<str>>,
    /// Backends asked in order until one answers `open`.
    pub backends: Vec<Arc<Backend>>,
    /// A screen-pop: the answer when there are no backends, or the fallback
    /// when none of them opened anything.
    pub open: Option<ScreenPop>,
    /// Whether backend templates may see `user.token`.
    pub forward_token: bool,
    /// Whether an `open` reply points at the completion wrapper page.
    pub wrap: bool,
    /// Its metric series, found on first use.
    pub metrics: Handles,
    /// What the ops console keeps of it; set by [`Router::new`].
    pub card: Arc<Card>,
}

/// What the ops console shows of a route: its name, why it is chosen, its
/// backends' names and request header lines. Built once with the router
/// and shared (an `Arc`) by the calls the console keeps, so recording a
/// call copies none of it, and a trace read after a reload still speaks of
/// the config the call ran under.
#[derive(Debug, Default)]
pub struct Card {
    /// The route's name; shared, as the console's per-route history is
    /// known by it (found by this pointer, not by comparing names).
    pub name: Arc<str>,
    /// Why it is chosen.
    pub explain: Explain,
    /// Its backends, in its order.
    pub backends: Box<[BackendCard]>,
}

/// What the ops console shows of one of a route's backends.
#[derive(Debug)]
pub struct BackendCard {
    /// Its name; shared, as the console's per-backend history is known
    /// by it.
    pub name: Arc<str>,
    /// The header lines of every request it sends, as `simulate` writes
    /// them, when none is templated
    /// ([`RequestSpec::shown_headers`](crate::backend::request::RequestSpec::shown_headers)).
    pub headers: Option<Arc<str>>,
    /// Whether its body is a form (`simulate` decodes it).
    pub form: bool,
    /// The backend's address: which backend a step is about, told by a
    /// comparison (never read through).
    address: usize,
}

impl Card {
    fn new(route: &Route, explain: Explain) -> Self {
        let backends = route.backends.iter().map(|backend| BackendCard {
            name: Arc::from(&*backend.name),
            headers: backend.request.shown_headers().cloned(),
            form: backend
                .request
                .body
                .content_type()
                .is_some_and(|t| crate::backend::shown::is_form(t.as_bytes())),
            address: address(backend),
        });
        Self {
            name: Arc::from(&*route.name),
            explain,
            backends: backends.collect(),
        }
    }

    /// The place of `backend` among the route's backends; `None` for
    /// another (the console names it "?").
    pub fn index_of(&self, backend: &Backend) -> Option<usize> {
        let address = address(backend);
        self.backends.iter().position(|b| b.address == address)
    }

    /// The place of the backend named `name`.
    pub fn index_named(&self, name: &str) -> Option<usize> {
        self.backends.iter().position(|b| &*b.name == name)
    }
}

fn address(backend: &Backend) -> usize {
    std::ptr::from_ref(backend) as usize
}

/// Why a route is chosen: the routes before it on its path, whose `when`
/// did not hold, then its own. Written once per path when the router is
/// built and shared by the calls the console keeps, so a trace tells the
/// choice from the config the call ran under, after a reload too.
#[derive(Debug, Clone, Default)]
pub struct Explain {
    /// For each route of the path: its line when skipped, and when chosen.
    lines: Arc<[(Box<str>, Box<str>)]>,
    /// The route's place on its path.
    index: usize,
}

impl Explain {
    /// The lines of every route of a path, for its routes to share.
    fn of_path(routes: &[Route]) -> Arc<[(Box<str>, Box<str>)]> {
        routes
            .iter()
            .map(|route| {
                let name = &route.name;
                match &route.when_source {
                    Some(src) => (
                        format!("route {name:?}: when `{src}` did not hold: skipped").into(),
                        format!("route {name:?}: when `{src}` holds: chosen").into(),
                    ),
                    None => (
                        format!("route {name:?}: skipped").into(),
                        format!("route {name:?}: no when: matches every call: chosen").into(),
                    ),
                }
            })
            .collect()
    }

    /// Its lines, each ending in a newline.
    pub fn write(&self, out: &mut String) {
        for (skipped, _) in self.lines.iter().take(self.index) {
            out.push_str(skipped);
            out.push('\n');
        }
        if let Some((_, chosen)) = self.lines.get(self.index) {
            out.push_str(chosen);
            out.push('\n');
        }
    }
}

/// An `open` reply built from templates.
#[derive(Debug)]
pub struct ScreenPop {
    /// The event the tab opens on.
    pub event: Event,
    /// The tab's url; values are percent-encoded.
    pub url: TemplateId,
    /// The tab's title.
    pub title: TemplateId,
    /// Whether the agent is paused while the tab is open.
    pub autopause: bool,
}

impl Router {
    /// Builds a router from compiled routes (in config order) and their templates.
    pub fn new(templates: Templates, routes: Vec<(Box<str>, Route)>) -> Self {
        let mut by_path: Vec<(Box<str>, Vec<Route>)> = Vec::new();
        for (path, route) in routes {
            match by_path.iter_mut().find(|(p, _)| *p == path) {
                Some((_, on_path)) => on_path.push(route),
                None => by_path.push((path, vec![route])),
            }
        }
        for (_, routes) in &mut by_path {
            let lines = Explain::of_path(routes);
            for (index, route) in routes.iter_mut().enumerate() {
                let explain = Explain {
                    lines: Arc::clone(&lines),
                    index,
                };
                route.card = Arc::new(Card::new(route, explain));
            }
        }
        Self {
            templates: std::sync::Arc::new(templates),
            by_path,
        }
    }

    /// The templates the routes use.
    pub fn templates(&self) -> &Templates {
        &self.templates
    }

    /// The same, shared with tasks that outlive a call (directory syncs).
    pub fn shared_templates(&self) -> std::sync::Arc<Templates> {
        std::sync::Arc::clone(&self.templates)
    }

    /// The routes on a path, in config order; `None` when the path is unknown.
    pub fn routes_on(&self, path: &str) -> Option<&[Route]> {
        self.by_path
            .iter()
            .find(|(p, _)| **p == *path)
            .map(|(_, routes)| routes.as_slice())
    }

    /// Every path that has routes.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.by_path.iter().map(|(p, _)| &**p)
    }

    /// Number of routes in all.
    pub fn len(&self) -> usize {
        self.by_path.iter().map(|(_, routes)| routes.len()).sum()
    }

    /// Whether there are no routes at all.
    pub fn is_empty(&self) -> bool {
        self.by_path.is_empty()
    }

    /// The first route whose condition holds. A condition that fails to
    /// evaluate is logged and counts as not matching, so one bad route never
    /// hides the ones after it.
    pub fn select<'a>(&self, routes: &'a [Route], ctx: &Value, id: RequestId) -> Option<&'a Route> {
        routes.iter().find(|route| match &route.when {
            None => true,
            Some(cond) => self.templates.test(cond, ctx).unwrap_or_else(|err| {
                tracing::warn!(%id, route = %route.name, error = %err, "when condition failed to evaluate; route skipped");
                false
            }),
        })
    }
}

impl ScreenPop {
    /// Renders the reply for a payload; any failure is a `none` reason,
    /// logged with the request's id.
    pub fn reply(
        &self,
        templates: &Templates,
        ctx: &Value,
        route: &str,
        id: RequestId,
    ) -> Result<Open, Failure> {
        self.open(templates, ctx).inspect_err(|failure| {
            tracing::warn!(%id, route, reason = %failure.reason, error = %failure.detail, "screen-pop refused");
        })
    }

    /// Renders and validates the reply for a payload, as every call does;
    /// `check` asks the same of the sample payloads.
    pub fn open(&self, templates: &Templates, ctx: &Value) -> Result<Open, Failure> {
        let render = |template: &TemplateId| {
            templates
                .render(template, ctx)
                .map_err(|err| Failure::new(NoneReason::Template, err))
        };
        let url = render(&self.url)?;
        if let Some(segment) = crate::template::dot_segment(&url) {
            return Err(Failure::new(
                NoneReason::Template,
                format!("url path has a dot segment {segment:?}: refused, it would move the page"),
            ));
        }
        let title = render(&self.title)?;
        Open::new(self.event, &url, self.autopause, &title)
            .map_err(|err| Failure::new(NoneReason::InvalidReply, err))
    }
}
