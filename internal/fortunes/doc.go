// Package fortunes reads the fortune cookie files that Debian's fortunes
// package installs (/usr/share/games/fortunes, BSD licence; see
// /usr/share/doc/fortunes/copyright) as a labelled text corpus: each
// cookie file is a topic ("computers", "science", "politics", ...) and
// each cookie a document. The text classifier example and the text
// cluster test learn to tell the topics apart. Nothing is downloaded:
// without the package, Dir says how to install it.
package fortunes
