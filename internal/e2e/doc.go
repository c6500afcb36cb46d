// Package e2e runs the matomod binary against the real Matomo release
// (internal/realmatomo): real PHP console, real archives, Matomo's own API
// as the judge. It has tests only.
package e2e
