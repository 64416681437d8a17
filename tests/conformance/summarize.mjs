// Summarises an http-cache-tests results file: passed / failed / setup counts, required
// failures (overall and by theme), and the ids of the required failures.
//   node summarize.mjs SUITE_DIR RESULTS.json
import fs from 'fs'
import path from 'path'
import { pathToFileURL } from 'url'

const [suiteDir, resultsFile] = process.argv.slice(2)
const load = async f => (await import(pathToFileURL(path.join(suiteDir, f)).href)).default
const suites = await load('tests/index.mjs')
suites.push(await load('tests/surrogate-control.mjs'))
const results = JSON.parse(fs.readFileSync(resultsFile, 'utf8'))

const byId = new Map()
for (const s of suites) for (const t of s.tests) byId.set(t.id, { ...t, suite: s.id })

let passed = 0; let failed = 0; let setup = 0; let untested = 0
const requiredFailures = []
for (const [id, t] of byId) {
  const r = results[id]
  if (r === undefined) { untested++; continue }
  if (Array.isArray(r) && r[0] === 'Setup') { setup++; continue }
  if (r === true) { passed++; continue }
  failed++
  if (t.kind === undefined || t.kind === 'required') requiredFailures.push({ id, suite: t.suite, why: Array.isArray(r) ? r[1] : String(r) })
}
const themes = {}
for (const f of requiredFailures) themes[f.suite] = (themes[f.suite] || 0) + 1
console.log(`tests: ${byId.size}  passed: ${passed}  failed: ${failed}  setup: ${setup}  untested: ${untested}`)
console.log(`required failures: ${requiredFailures.length}`)
console.log(`by suite: ${JSON.stringify(themes)}`)
for (const f of requiredFailures) console.log(`  ${f.suite} ${f.id}: ${(f.why || '').slice(0, 140)}`)
