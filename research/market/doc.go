// Package market supplies the market facts a research run writes from: daily price history from a provider
// (Yahoo's chart API, a folder of CSV files, or a labelled synthetic demo), technical indicators computed
// exactly from that history, scan signals, and a chart.
//
// Everything here is meant to be quoted to a reader, directly or through a model, so the package leans towards
// honesty over convenience:
//   - a failed fetch is an error, never quietly replaced by demo data;
//   - demo data is marked Synthetic on the provider, on every Series, on every Indicators value and in chart
//     titles;
//   - an indicator that lacks the history it needs is a Value with OK false, never a zero that reads as a fact.
//
// Units: prices are in the series' currency; every percentage (returns, distances, drawdown, volatility) is
// in percent, so 1.5 means 1.5 %; ratios (VolumeVsAvg20) are plain multiples.
package market
