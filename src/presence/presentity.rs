//! All publications of one (presentity URI, event package): the event state compositor of
//! RFC 3903 for one resource.
//!
//! Sans-IO: every method that needs time takes `now`. Invariants:
//! * ETags are unique within a presentity; a replaced or removed ETag is gone at once, so a
//!   later SIP-If-Match with it fails with 412.
//! * A publication with `expires_at <= now` is dead: If-Match cannot name it and it does not
//!   count against the limit, but it stays held until [`Presentity::expire`] removes and
//!   returns it (so the caller can notify watchers of the removal).
//! * A refused PUBLISH ([`PublishError`]) never changes anything.

use crate::clock::Timestamp;
use crate::ids::{ETag, EventKey, PresentityUri};
use crate::presence::package::{Body, EventPackage};
use crate::presence::publication::{
    Publication, PublishError, PublishInput, PublishOutcome, RetrieveOrder,
};

/// The publications of one presentity for one event package.
#[derive(Clone, Debug)]
pub struct Presentity {
    uri: PresentityUri,
    event: EventKey,
    /// In insertion order (modify keeps the position).
    publications: Vec<Publication>,
}

impl Presentity {
    /// A presentity without publications.
    pub fn new(uri: PresentityUri, event: EventKey) -> Self {
        Presentity {
            uri,
            event,
            publications: Vec::new(),
        }
    }

    /// Applies a PUBLISH (RFC 3903 §6).
    ///
    /// No If-Match → initial: body required, type checked, validated, new ETag (with Expires
    /// 0 the request is answered but nothing is stored). If-Match → must name a live
    /// publication, else 412; Expires 0 = remove (`changed`, the removed ETag returned,
    /// expires 0); no body = refresh (new ETag unless `pkg.etag_not_new()`; `changed` only
    /// when a new `priority` reorders composition); body = modify (`changed`). A new
    /// ETag replaces the old one. `max_publications` bounds the live publications.
    pub fn publish(
        &mut self,
        now: Timestamp,
        pkg: &dyn EventPackage,
        input: PublishInput,
        max_publications: usize,
    ) -> Result<PublishOutcome, PublishError> {
        let expires_at = now.plus_secs(u64::from(input.expires));
        let Some(if_match) = input.if_match else {
            let body = input.body.ok_or(PublishError::MissingBody)?;
            check_body(pkg, &body)?;
            let etag = ETag::mint();
            if input.expires == 0 {
                return Ok(PublishOutcome {
                    etag,
                    expires: 0,
                    changed: false,
                });
            }
            let live = self
                .publications
                .iter()
                .filter(|p| p.expires_at > now)
                .count();
            if live >= max_publications {
                return Err(PublishError::TooManyPublications {
                    max: max_publications,
                });
            }
            // Most presentities hold one publication for their whole life: no spare slots
            // (a Publication is 128 bytes).
            self.publications.reserve_exact(1);
            self.publications.push(Publication {
                etag: etag.clone(),
                body,
                expires_at,
                received_at: now,
                priority: input.priority.unwrap_or_else(|| default_priority(now)),
                origin: input.origin,
            });
            return Ok(PublishOutcome {
                etag,
                expires: input.expires,
                changed: true,
            });
        };

        let idx = self
            .publications
            .iter()
            .position(|p| p.etag == if_match && p.expires_at > now)
            .ok_or(PublishError::ConditionalRequestFailed)?;
        if input.expires == 0 {
            let removed = self.publications.remove(idx);
            return Ok(PublishOutcome {
                etag: removed.etag,
                expires: 0,
                changed: true,
            });
        }
        if let Some(body) = &input.body {
            check_body(pkg, body)?;
        }
        let new_etag = if pkg.etag_not_new() {
            if_match
        } else {
            ETag::mint()
        };
        let p = &mut self.publications[idx];
        p.etag = new_etag.clone();
        p.expires_at = expires_at;
        p.origin = input.origin;
        let changed = match input.body {
            Some(body) => {
                p.body = body;
                p.received_at = now;
                p.priority = input.priority.unwrap_or_else(|| default_priority(now));
                true
            }
            None => match input.priority {
                Some(prio) if prio != p.priority => {
                    p.priority = prio;
                    true
                }
                _ => false,
            },
        };
        Ok(PublishOutcome {
            etag: new_etag,
            expires: input.expires,
            changed,
        })
    }

    /// Removes the publications whose `expires_at <= now` and returns them (the caller
    /// notifies watchers unless `force_delete`).
    pub fn expire(&mut self, now: Timestamp) -> Vec<Publication> {
        let (gone, kept) = std::mem::take(&mut self.publications)
            .into_iter()
            .partition(|p| p.expires_at <= now);
        self.publications = kept;
        gone
    }

    /// The earliest `expires_at` of the held publications.
    pub fn next_expiry(&self) -> Option<Timestamp> {
        self.publications.iter().map(|p| p.expires_at).min()
    }

    /// The composed document of all held publications (ordered per `order`), with the
    /// package's NOTIFY content type; `None` when there are none. Call [`Self::expire`] first
    /// for a view without dead publications.
    pub fn compose(&self, pkg: &dyn EventPackage, order: &RetrieveOrder) -> Option<Body> {
        if self.publications.is_empty() {
            return None;
        }
        let mut pubs: Vec<&Publication> = self.publications.iter().collect();
        order.sort(&mut pubs);
        let docs: Vec<&[u8]> = pubs.iter().map(|p| &p.body.bytes[..]).collect();
        let bytes = pkg.aggregate(&self.uri, &docs)?;
        let content_type = match pkg.content_types().first() {
            Some(t) => (*t).to_string(),
            // `pubs` is non-empty: `self.publications` was checked above.
            None => pubs[0].body.content_type.clone(),
        };
        Some(Body {
            content_type,
            bytes,
        })
    }

    /// The held publications, in insertion order.
    pub fn publications(&self) -> &[Publication] {
        &self.publications
    }

    /// Installs a publication restored from the store or received from a peer; one with the
    /// same ETag is replaced.
    pub fn insert_restored(&mut self, p: Publication) {
        match self.publications.iter_mut().find(|q| q.etag == p.etag) {
            Some(q) => *q = p,
            None => self.publications.push(p),
        }
    }

    /// Removes the publication named `etag`, live or not.
    pub fn remove_etag(&mut self, etag: &ETag) -> Option<Publication> {
        let idx = self.publications.iter().position(|p| &p.etag == etag)?;
        Some(self.publications.remove(idx))
    }

    /// The presentity URI.
    pub fn uri(&self) -> &PresentityUri {
        &self.uri
    }

    /// The event package.
    pub fn event(&self) -> &EventKey {
        &self.event
    }

    /// Whether no publication is held.
    pub fn is_empty(&self) -> bool {
        self.publications.is_empty()
    }
}

/// Content type (media type, case-insensitive, parameters ignored) and package validation.
fn check_body(pkg: &dyn EventPackage, body: &Body) -> Result<(), PublishError> {
    let media = body.media_type();
    if !pkg
        .content_types()
        .iter()
        .any(|t| t.eq_ignore_ascii_case(media))
    {
        return Err(PublishError::UnsupportedMediaType {
            accept: pkg.content_types().join(", "),
        });
    }
    pkg.validate_publish(&body.bytes)
        .map_err(PublishError::BadBody)
}

/// Kamailio's priority when none is given: the receive time in seconds (newer ranks higher).
fn default_priority(now: Timestamp) -> i32 {
    i32::try_from(now.as_unix_secs()).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests;
